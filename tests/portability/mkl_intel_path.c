/* Makes Intel MKL take the code paths it takes on Intel CPUs.
 *
 * MKL chooses its kernels by CPU vendor as well as by instruction set: on AMD CPUs it runs generic
 * kernels, on Intel CPUs with AVX-512 its own AVX-512 ones, which split and order the sums of a
 * matrix product differently (and differently for different matrix shapes). A test that compares a
 * batch of 1 with a batch of 3 bit for bit can pass on an AMD machine and fail on a Xeon. Preloaded
 * (LD_PRELOAD) on an AMD x86-64 machine, these two answers make MKL use its Intel kernels, so the
 * suite meets them there too. On an Intel machine they change nothing.
 *
 * torch's wheels export these MKL service functions from libtorch_cpu.so, so the preloaded
 * definitions take their place.
 */
int mkl_serv_intel_cpu_true(void) { return 1; }
int mkl_serv_intel_cpu(void) { return 1; }
