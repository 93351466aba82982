"""Ceilings on the sizes a user can ask for, each defined once.

The command line bounds its flags with these numbers while parsing, and the code behind it (the
config check, the dataset reader, the trajectory builder, the synthetic-data generator) bounds
the same values again for Python callers. Both read them from here, so they cannot drift apart.
This module imports nothing: the command line reads it before torch or OmegaConf is loaded.
"""

# Pixels per side of an image, a tri-plane or a patch. EpiGRAF and 3DGP train at 256-512 (1024 at
# most); 4096 leaves room and keeps one batch of 32 RGB training images at 1.5 GiB. Larger photos
# are for `trigan dataset resize` to shrink.
MAX_IMAGE_SIDE = 4096

# Classes of a model, hence labels of a dataset (class indices below it). The model gets one input
# per class (the one-hot label feeds Linear layers of width w_dim in G, G_ema and D, each with two
# Adam moments): 10,000 classes is ten times ImageNet-1k, the largest labelled set EpiGRAF/3DGP
# train on, and keeps those layers near 100 MB; a label beyond it is an id or a typo (1e9 would
# mean hundreds of GB), not a class.
MAX_CLASSES = 10_000

# A latent's seed: numpy's RandomState (which draws the latent of a seed) takes seeds below 2^32.
MAX_SEED = 2 ** 32 - 1

# Samples per ray (model.render.num_steps, --num-steps): 4096 is 40x EpiGRAF's 96 + 96 at inference.
MAX_RAY_STEPS = 4096

# Training length in thousands of images: a billion is far past any schedule.
MAX_KIMG = 1e9

# Frames of one trajectory: 5.5 minutes at 30 fps.
MAX_FRAMES = 10_000

# `trigan dataset synth`. The plan and the dataset.json hold a few hundred bytes of Python objects
# per image, so a million images (an ImageNet-sized set) stays under a GB; one image is rendered at
# a time at least, and 1024 pixels with 2x2 supersampling is 4M sub-rays, twice the renderer's
# chunk: about 1 GB of ray arrays. Its seeds feed numpy's Generator, which takes 64-bit ones.
SYNTH_MAX_IMAGES = 1_000_000
SYNTH_MAX_RESOLUTION = 1024
SYNTH_MAX_SEED = 2 ** 63 - 1

# Optimisation steps of one inversion stage (`trigan invert --steps`, `--pti-steps`, the Invert tab):
# 500 times the default 200 latent steps.
MAX_INVERSION_STEPS = 100_000

# Pivotal tuning's hold (`--pti-hold`): the weight of the other sides' change against the photo's fit
# when the kept tuning state is chosen. At 1000 any change to the other sides already outweighs the
# photo's gain; more says nothing new.
MAX_TUNE_HOLD = 1000.0
