"""Headless OpenGL: an EGL context with no window, a float framebuffer and a hull-mesh ray marcher.

Used by the preview path (`core.preview`): a per-latent hull mesh is rasterised and each pixel it
covers integrates a baked 3-D texture of colour and density along its ray, in a few milliseconds.
EGL needs no display, so the same code runs in a terminal, under a desktop viewer (whose own GL
context lives in another thread and is untouched) and on a GPU server:

- the display comes from the first EGL device that initialises (an NVIDIA GPU, or Mesa's software
  device backed by llvmpipe on machines without one), else Mesa's surfaceless platform;
- the context is desktop OpenGL 3.3 core with no surface (EGL_KHR_surfaceless_context); drawing goes
  into our own framebuffer of two float colour targets and a depth buffer.

A context is made current only for the duration of a call and released afterwards, under one lock,
so any thread may draw (the viewer's render worker, a test's main thread).

PyOpenGL must use its EGL platform: `PYOPENGL_PLATFORM=egl` is set before OpenGL is first imported.
If something imported PyOpenGL earlier with another platform, `gl_unavailable()` says so.
"""

from __future__ import annotations

import ctypes
import os
import threading
from typing import Optional, Tuple

import numpy as np

_LOCK = threading.RLock()
_STATE: dict = {}          # "context": _EglContext once created; "error": the reason it can't be


def _import_gl():
    # PyOpenGL picks its platform when first imported, so it is imported here, after
    # PYOPENGL_PLATFORM is set, and only by the preview path (it fails where there is no libEGL).
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    import OpenGL  # noqa: PLC0415
    from OpenGL import EGL  # noqa: PLC0415 (EGL's wrappers need the error checker: imported before it is off)
    # Error checking after every GL call costs more than the draw itself on small meshes; the few
    # calls whose failure matters are checked explicitly (shader compile/link, framebuffer status).
    if "OpenGL.GL" not in __import__("sys").modules:
        OpenGL.ERROR_CHECKING = False
    from OpenGL import GL  # noqa: PLC0415
    platform = type(OpenGL.platform.PLATFORM).__name__
    if "EGL" not in platform:
        raise RuntimeError(f"PyOpenGL was already set up for {platform}, not EGL "
                           "(set PYOPENGL_PLATFORM=egl before anything imports OpenGL)")
    return EGL, GL


class _EglContext:
    def __init__(self):
        EGL, GL = _import_gl()
        self.EGL, self.GL = EGL, GL
        self.display = self._display()
        attribs = (EGL.EGLint * 9)(EGL.EGL_SURFACE_TYPE, EGL.EGL_PBUFFER_BIT,
                                   EGL.EGL_RENDERABLE_TYPE, EGL.EGL_OPENGL_BIT,
                                   EGL.EGL_DEPTH_SIZE, 24, EGL.EGL_NONE, 0, 0)
        config, count = EGL.EGLConfig(), EGL.EGLint()
        if not EGL.eglChooseConfig(self.display, attribs, ctypes.pointer(config), 1, ctypes.pointer(count)) \
                or count.value < 1:
            raise RuntimeError("EGL offers no OpenGL configuration")
        if not EGL.eglBindAPI(EGL.EGL_OPENGL_API):
            raise RuntimeError("EGL cannot bind desktop OpenGL")
        ctx_attribs = (EGL.EGLint * 7)(EGL.EGL_CONTEXT_MAJOR_VERSION, 3, EGL.EGL_CONTEXT_MINOR_VERSION, 3,
                                       EGL.EGL_CONTEXT_OPENGL_PROFILE_MASK,
                                       EGL.EGL_CONTEXT_OPENGL_CORE_PROFILE_BIT, EGL.EGL_NONE)
        self.context = EGL.eglCreateContext(self.display, config, EGL.EGL_NO_CONTEXT, ctx_attribs)
        if not self.context:
            raise RuntimeError("EGL could not create an OpenGL 3.3 core context")
        with self.current():
            self.renderer = GL.glGetString(GL.GL_RENDERER).decode(errors="replace")

    def _display(self):
        EGL = self.EGL
        major, minor = EGL.EGLint(), EGL.EGLint()
        try:  # devices first: works on headless NVIDIA drivers and on Mesa (software device)
            # PyOpenGL, imported by _import_gl after its platform was chosen.
            from OpenGL.EGL.EXT.device_base import eglQueryDevicesEXT  # noqa: PLC0415
            from OpenGL.EGL.EXT.platform_base import eglGetPlatformDisplayEXT  # noqa: PLC0415
            from OpenGL.EGL.EXT.platform_device import EGL_PLATFORM_DEVICE_EXT  # noqa: PLC0415
            devices, num = (EGL.EGLDeviceEXT * 8)(), EGL.EGLint()
            if eglQueryDevicesEXT(8, devices, ctypes.pointer(num)):
                for i in range(num.value):
                    display = eglGetPlatformDisplayEXT(EGL_PLATFORM_DEVICE_EXT, devices[i], None)
                    if display and EGL.eglInitialize(display, ctypes.pointer(major), ctypes.pointer(minor)):
                        return display
        except Exception:  # noqa: BLE001 - an EGL without the device extensions: try the default display
            pass
        os.environ.setdefault("EGL_PLATFORM", "surfaceless")
        display = EGL.eglGetDisplay(EGL.EGL_DEFAULT_DISPLAY)
        if not display or not EGL.eglInitialize(display, ctypes.pointer(major), ctypes.pointer(minor)):
            raise RuntimeError("no EGL display could be initialised (is Mesa's libEGL installed?)")
        return display

    def current(self):
        ctx = self

        class _Current:
            def __enter__(self_inner):
                _LOCK.acquire()
                if not ctx.EGL.eglMakeCurrent(ctx.display, ctx.EGL.EGL_NO_SURFACE, ctx.EGL.EGL_NO_SURFACE,
                                              ctx.context):
                    _LOCK.release()
                    raise RuntimeError("EGL could not make the OpenGL context current")

            def __exit__(self_inner, *exc):
                try:
                    ctx.EGL.eglMakeCurrent(ctx.display, ctx.EGL.EGL_NO_SURFACE, ctx.EGL.EGL_NO_SURFACE,
                                           ctx.EGL.EGL_NO_CONTEXT)
                finally:
                    _LOCK.release()
        return _Current()


def gl_context() -> _EglContext:
    """The process's headless GL context (created on first use); RuntimeError says why there is none."""
    with _LOCK:
        if "context" in _STATE:
            return _STATE["context"]
        if "error" in _STATE:
            raise RuntimeError(_STATE["error"])
        try:
            _STATE["context"] = _EglContext()
        except Exception as exc:  # noqa: BLE001 - any failure means: no GL here, with its reason
            _STATE["error"] = f"{type(exc).__name__}: {exc}" if not isinstance(exc, RuntimeError) else str(exc)
            raise RuntimeError(_STATE["error"]) from None
        return _STATE["context"]


def gl_unavailable() -> Optional[str]:
    """None when headless OpenGL works here, else the reason (one line)."""
    try:
        gl_context()
        return None
    except RuntimeError as exc:
        return str(exc)


_VERTEX_SHADER = """
#version 330 core
layout(location = 0) in vec3 position;
layout(location = 1) in vec3 normal;
uniform mat4 world_to_clip;
out vec3 v_world;
out vec3 v_normal;
invariant gl_Position;   // the depth pre-pass and the march pass must produce equal depths
void main() {
    v_world = position;
    v_normal = normal;
    gl_Position = world_to_clip * vec4(position, 1.0);
}
"""

# The march pass writes two float targets: (premultiplied colour, opacity) and (unit normal x
# opacity, the normal being the weighted density gradient's direction, or the hull's when normals are
# not asked for; sum of weight x distance), as the volume renderer composites them. The nearest hull
# fragment starts the march `start_back` before itself (not before the ray interval's start: a hull in
# front of it still starts a march there, as the density may already be high where the rays begin)
# and steps `step_len` through the baked volume (doubled after every `double_every` steps from where
# the ray first meets density, when that is > 0), front to back, until the transmittance is below
# `min_transmittance`, the ray is `start_back` past the farthest hull fragment (beyond it nothing is
# above the hull's level), the interval ends or `max_steps` are taken.
_FRAGMENT_SHADER = """
#version 330 core
in vec3 v_world;
in vec3 v_normal;
uniform vec3 eye;
uniform vec2 ray_range;
uniform sampler3D volume;       // rgb, activated density; texel centres on the probe lattice
uniform vec3 tex_scale;         // world point -> texture coordinate: p * tex_scale + tex_offset
uniform vec3 tex_offset;
uniform float step_len;
uniform float start_back;
uniform int max_steps;
uniform int double_every;       // > 0: the step doubles after every this many steps, counted from where
                                // the ray's opacity first passes 0.001 (a haze is crossed in few steps)
uniform float min_transmittance;
uniform int pass_kind;          // 0: march; 1: depth only (nearest hull); 2: distance (farthest hull)
uniform sampler2D exit_map;     // per pixel: distance of the farthest hull fragment (pass 2's output)
uniform int want_normals;       // 1: also sum weight x -grad(density), by central differences
uniform float texel;            // one texel in texture coordinates: the differences' half-width
layout(location = 0) out vec4 out_color;
layout(location = 1) out vec4 out_geometry;
void main() {
    float dist = length(v_world - eye);
    // a hull surface beyond the interval's end still bounds the march (at the end); for the nearest
    // surface and the march itself it is out of reach
    if (pass_kind != 2 && dist > ray_range.y) discard;
    if (pass_kind != 0) {
        out_color = vec4(dist, 0.0, 0.0, 0.0);
        out_geometry = vec4(0.0);
        return;
    }
    vec3 dir = (v_world - eye) / dist;
    float t0 = max(dist - start_back, ray_range.x);
    // beyond the last hull surface on this ray there is nothing above the hull's level
    float t_end = min(texelFetch(exit_map, ivec2(gl_FragCoord.xy), 0).r + start_back, ray_range.y);
    float trans = 1.0;
    vec3 color = vec3(0.0);
    float depth = 0.0;
    vec3 normal = vec3(0.0);
    float t_start = t0;
    float dt = step_len;
    int counted = 0;                    // steps since the ray first met some density
    for (int i = 0; i < max_steps; ++i) {
        if (double_every > 0 && counted > 0 && counted % double_every == 0) dt *= 2.0;
        float t = t_start + 0.5 * dt;   // the midpoint of this step
        if (t > t_end) break;
        t_start += dt;
        // the volume is stored [x][y][z] with z fastest: z is the texture's s coordinate
        vec3 q = ((eye + t * dir) * tex_scale + tex_offset).zyx;
        vec4 s = texture(volume, q);
        float alpha = 1.0 - exp(-max(s.a, 0.0) * dt);
        float weight = trans * alpha;
        color += weight * s.rgb;
        depth += weight * t;
        if (want_normals == 1 && weight > 1e-4) {
            // q is (z, y, x): the differences along q's axes give the gradient's z, y, x
            vec3 g = vec3(texture(volume, q + vec3(0.0, 0.0, texel)).a - texture(volume, q - vec3(0.0, 0.0, texel)).a,
                          texture(volume, q + vec3(0.0, texel, 0.0)).a - texture(volume, q - vec3(0.0, texel, 0.0)).a,
                          texture(volume, q + vec3(texel, 0.0, 0.0)).a - texture(volume, q - vec3(texel, 0.0, 0.0)).a);
            normal -= weight * g;
        }
        trans *= 1.0 - alpha;
        if (counted > 0 || trans < 0.999) counted += 1;
        if (trans < min_transmittance) break;
    }
    // Each step's gradient counts with its length as well as its weight: inside a solid the density
    // is flat and the direction of its differences is filtering noise (unit vectors there cost a
    // soft-edged ball 2% of cosine against the exact normals). The sum is scaled to the opacity, so
    // that the caller can add what the rest of the ray sees, as the volume renderer does.
    vec3 n = want_normals == 1 ? normal : v_normal;
    float n_len = length(n);
    out_color = vec4(color, 1.0 - trans);
    out_geometry = vec4(n_len > 0.0 ? n / n_len * (1.0 - trans) : vec3(0.0), depth);
}
"""


class HullMarcher:
    """A closed hull mesh and a baked volume uploaded once; each pixel whose ray meets the hull
    integrates the volume along the ray from just before the hit.

        marcher = HullMarcher(vertices, faces, normals, volume, (lo, hi))
        color, geometry = marcher.draw(world_to_clip, eye, (near, far), (h, w), step, start_back, steps,
                                       normals=False, double_every=0)
        # color [h, w, 4]: premultiplied rgb and opacity (0 where the ray misses the hull);
        # geometry [h, w, 4]: unit normal x opacity (the direction of sum of weight x -grad density;
        # with normals=False the hull's normal, cheaper) and sum of weight x distance; row 0 at top

    `volume` [n, n, n, 4] float (rgb, activated density per world unit) sampled at the lattice
    lo + i (hi - lo) / (n - 1), indexed [x, y, z]; between lattice points it is trilinear (the
    texture unit's filtering), outside [lo, hi] it is the nearest face's value. One pixel is one ray
    through its centre (no multisampling), as in the volume renderer. Three passes: the farthest hull
    distance per pixel (where the march may stop), the nearest hull depth (so that each pixel marches
    once however many hull layers overlap), then the march.
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray, volume: np.ndarray,
                 box: Tuple[np.ndarray, np.ndarray], min_transmittance: float = 1e-3):
        self.ctx = gl_context()
        GL = self.ctx.GL
        data = np.concatenate([np.asarray(vertices, np.float32), np.asarray(normals, np.float32)], axis=1)
        index = np.ascontiguousarray(np.asarray(faces, np.uint32).reshape(-1))
        volume = np.ascontiguousarray(volume, np.float32)
        n = volume.shape[0]
        if volume.shape != (n, n, n, 4):
            raise ValueError(f"volume must be [n, n, n, 4], got {list(volume.shape)}")
        lo, hi = (np.asarray(b, np.float64) for b in box)
        # lattice point i sits at texel centre (i + 1/2) / n
        self.tex_scale = (n - 1) / (hi - lo) / n
        self.tex_offset = 0.5 / n - lo * self.tex_scale
        self.texel = 1.0 / n
        self.min_transmittance = float(min_transmittance)
        self.num_indices = int(index.size)
        self._size: Tuple[int, int] = (0, 0)
        self._targets = None
        with self.ctx.current():
            self.program = _program(GL)
            self.vao = GL.glGenVertexArrays(1)
            GL.glBindVertexArray(self.vao)
            self.vbo, self.ibo = GL.glGenBuffers(2)
            GL.glBindBuffer(GL.GL_ARRAY_BUFFER, self.vbo)
            GL.glBufferData(GL.GL_ARRAY_BUFFER, data.nbytes, np.ascontiguousarray(data), GL.GL_STATIC_DRAW)
            GL.glBindBuffer(GL.GL_ELEMENT_ARRAY_BUFFER, self.ibo)
            GL.glBufferData(GL.GL_ELEMENT_ARRAY_BUFFER, index.nbytes, index, GL.GL_STATIC_DRAW)
            stride = 6 * 4
            for loc, offset in enumerate((0, 3)):  # position, normal
                GL.glEnableVertexAttribArray(loc)
                GL.glVertexAttribPointer(loc, 3, GL.GL_FLOAT, GL.GL_FALSE, stride, ctypes.c_void_p(4 * offset))
            GL.glBindVertexArray(0)
            self.texture = GL.glGenTextures(1)
            GL.glBindTexture(GL.GL_TEXTURE_3D, self.texture)
            for key, value in ((GL.GL_TEXTURE_MIN_FILTER, GL.GL_LINEAR), (GL.GL_TEXTURE_MAG_FILTER, GL.GL_LINEAR),
                               (GL.GL_TEXTURE_WRAP_S, GL.GL_CLAMP_TO_EDGE), (GL.GL_TEXTURE_WRAP_T, GL.GL_CLAMP_TO_EDGE),
                               (GL.GL_TEXTURE_WRAP_R, GL.GL_CLAMP_TO_EDGE)):
                GL.glTexParameteri(GL.GL_TEXTURE_3D, key, value)
            GL.glPixelStorei(GL.GL_UNPACK_ALIGNMENT, 1)
            GL.glTexImage3D(GL.GL_TEXTURE_3D, 0, GL.GL_RGBA32F, n, n, n, 0, GL.GL_RGBA, GL.GL_FLOAT, volume)
            GL.glBindTexture(GL.GL_TEXTURE_3D, 0)
            self.loc = {name: GL.glGetUniformLocation(self.program, name)
                        for name in ("world_to_clip", "eye", "ray_range", "volume", "tex_scale", "tex_offset",
                                     "step_len", "start_back", "max_steps", "min_transmittance", "pass_kind",
                                     "exit_map", "want_normals", "texel", "double_every")}

    def _framebuffer(self, size: Tuple[int, int]) -> None:
        GL = self.ctx.GL
        if self._size == size:
            GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self.fbo)
            return
        self._release_targets()
        h, w = size
        self.fbo = GL.glGenFramebuffers(1)
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self.fbo)
        self._targets = GL.glGenRenderbuffers(3)
        for i, fmt in enumerate((GL.GL_RGBA32F, GL.GL_RGBA32F, GL.GL_DEPTH_COMPONENT24)):
            GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, self._targets[i])
            GL.glRenderbufferStorage(GL.GL_RENDERBUFFER, fmt, w, h)
            attach = GL.GL_DEPTH_ATTACHMENT if i == 2 else GL.GL_COLOR_ATTACHMENT0 + i
            GL.glFramebufferRenderbuffer(GL.GL_FRAMEBUFFER, attach, GL.GL_RENDERBUFFER, self._targets[i])
        _check_framebuffer(GL)
        GL.glDrawBuffers(2, [GL.GL_COLOR_ATTACHMENT0, GL.GL_COLOR_ATTACHMENT1])
        # The exit map: a float texture (read by the march pass) with its own depth buffer.
        self.exit_fbo = GL.glGenFramebuffers(1)
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self.exit_fbo)
        self.exit_texture = GL.glGenTextures(1)
        GL.glBindTexture(GL.GL_TEXTURE_2D, self.exit_texture)
        GL.glTexParameteri(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_MIN_FILTER, GL.GL_NEAREST)
        GL.glTexParameteri(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_MAG_FILTER, GL.GL_NEAREST)
        GL.glTexImage2D(GL.GL_TEXTURE_2D, 0, GL.GL_R32F, w, h, 0, GL.GL_RED, GL.GL_FLOAT, None)
        GL.glBindTexture(GL.GL_TEXTURE_2D, 0)
        GL.glFramebufferTexture2D(GL.GL_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, GL.GL_TEXTURE_2D, self.exit_texture, 0)
        self.exit_depth = GL.glGenRenderbuffers(1)
        GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, self.exit_depth)
        GL.glRenderbufferStorage(GL.GL_RENDERBUFFER, GL.GL_DEPTH_COMPONENT24, w, h)
        GL.glFramebufferRenderbuffer(GL.GL_FRAMEBUFFER, GL.GL_DEPTH_ATTACHMENT, GL.GL_RENDERBUFFER, self.exit_depth)
        _check_framebuffer(GL)
        GL.glDrawBuffers(1, [GL.GL_COLOR_ATTACHMENT0])
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self.fbo)
        self._size = size

    def _release_targets(self) -> None:
        GL = self.ctx.GL
        if self._targets is not None:
            GL.glDeleteRenderbuffers(3, self._targets)
            GL.glDeleteRenderbuffers(1, [self.exit_depth])
            GL.glDeleteTextures(1, [self.exit_texture])
            GL.glDeleteFramebuffers(2, [self.fbo, self.exit_fbo])
            self._targets, self._size = None, (0, 0)

    def draw(self, world_to_clip: np.ndarray, eye: np.ndarray, ray_range: Tuple[float, float],
             size: Tuple[int, int], step: float, start_back: float, max_steps: int,
             normals: bool = False, double_every: int = 0) -> Tuple[np.ndarray, np.ndarray]:
        GL = self.ctx.GL
        h, w = size
        with self.ctx.current():
            self._framebuffer((h, w))
            GL.glViewport(0, 0, w, h)
            GL.glEnable(GL.GL_DEPTH_TEST)
            # A camera inside the scene box sees the hull's inside: draw both faces, as a ray would
            # meet either.
            GL.glDisable(GL.GL_CULL_FACE)
            GL.glClearColor(0.0, 0.0, 0.0, 0.0)
            GL.glClear(GL.GL_COLOR_BUFFER_BIT | GL.GL_DEPTH_BUFFER_BIT)
            GL.glUseProgram(self.program)
            GL.glUniformMatrix4fv(self.loc["world_to_clip"], 1, GL.GL_TRUE,
                                  np.ascontiguousarray(world_to_clip, np.float32))
            GL.glUniform3f(self.loc["eye"], *(float(v) for v in eye))
            GL.glUniform2f(self.loc["ray_range"], float(ray_range[0]), float(ray_range[1]))
            GL.glUniform1i(self.loc["volume"], 0)
            GL.glUniform3f(self.loc["tex_scale"], *(float(v) for v in self.tex_scale))
            GL.glUniform3f(self.loc["tex_offset"], *(float(v) for v in self.tex_offset))
            GL.glUniform1f(self.loc["step_len"], float(step))
            GL.glUniform1f(self.loc["start_back"], float(start_back))
            GL.glUniform1i(self.loc["max_steps"], int(max_steps))
            GL.glUniform1i(self.loc["double_every"], int(double_every))
            GL.glUniform1f(self.loc["min_transmittance"], self.min_transmittance)
            GL.glUniform1i(self.loc["want_normals"], int(bool(normals)))
            GL.glUniform1f(self.loc["texel"], self.texel)
            GL.glUniform1i(self.loc["exit_map"], 1)
            GL.glActiveTexture(GL.GL_TEXTURE0)
            GL.glBindTexture(GL.GL_TEXTURE_3D, self.texture)
            GL.glBindVertexArray(self.vao)
            # pass 1: the farthest hull fragment's distance per pixel, into the exit map
            GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self.exit_fbo)
            GL.glClearDepth(0.0)
            GL.glClear(GL.GL_COLOR_BUFFER_BIT | GL.GL_DEPTH_BUFFER_BIT)
            GL.glClearDepth(1.0)
            GL.glDepthFunc(GL.GL_GREATER)
            GL.glUniform1i(self.loc["pass_kind"], 2)
            GL.glDrawElements(GL.GL_TRIANGLES, self.num_indices, GL.GL_UNSIGNED_INT, ctypes.c_void_p(0))
            # pass 2: depths only, of the nearest fragments
            GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self.fbo)
            GL.glColorMask(False, False, False, False)
            GL.glDepthFunc(GL.GL_LESS)
            GL.glUniform1i(self.loc["pass_kind"], 1)
            GL.glDrawElements(GL.GL_TRIANGLES, self.num_indices, GL.GL_UNSIGNED_INT, ctypes.c_void_p(0))
            # pass 3: march where the depth equals the nearest one
            GL.glColorMask(True, True, True, True)
            GL.glDepthFunc(GL.GL_LEQUAL)
            GL.glDepthMask(False)
            GL.glActiveTexture(GL.GL_TEXTURE1)
            GL.glBindTexture(GL.GL_TEXTURE_2D, self.exit_texture)
            GL.glUniform1i(self.loc["pass_kind"], 0)
            GL.glDrawElements(GL.GL_TRIANGLES, self.num_indices, GL.GL_UNSIGNED_INT, ctypes.c_void_p(0))
            GL.glDepthMask(True)
            GL.glBindVertexArray(0)
            GL.glBindTexture(GL.GL_TEXTURE_2D, 0)
            GL.glActiveTexture(GL.GL_TEXTURE0)
            GL.glBindTexture(GL.GL_TEXTURE_3D, 0)
            out = []
            for i in range(2):
                GL.glReadBuffer(GL.GL_COLOR_ATTACHMENT0 + i)
                raw = GL.glReadPixels(0, 0, w, h, GL.GL_RGBA, GL.GL_FLOAT)
                out.append(np.frombuffer(raw, np.float32).reshape(h, w, 4)[::-1])  # GL rows go bottom up
            GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)
        return out[0], out[1]

    def release(self) -> None:
        """Free the GPU-side buffers now (they are also freed with the context at exit)."""
        GL = self.ctx.GL
        with self.ctx.current():
            self._release_targets()
            GL.glDeleteBuffers(2, [self.vbo, self.ibo])
            GL.glDeleteVertexArrays(1, [self.vao])
            GL.glDeleteTextures(1, [self.texture])
            GL.glDeleteProgram(self.program)


def _check_framebuffer(GL) -> None:
    status = GL.glCheckFramebufferStatus(GL.GL_FRAMEBUFFER)
    if status != GL.GL_FRAMEBUFFER_COMPLETE:
        raise RuntimeError(f"OpenGL framebuffer incomplete (status {status:#x})")


def _program(GL):
    def compile_shader(kind, source):
        shader = GL.glCreateShader(kind)
        GL.glShaderSource(shader, source)
        GL.glCompileShader(shader)
        if not GL.glGetShaderiv(shader, GL.GL_COMPILE_STATUS):
            raise RuntimeError(f"OpenGL shader did not compile: {GL.glGetShaderInfoLog(shader).decode()[:200]}")
        return shader

    program = GL.glCreateProgram()
    shaders = [compile_shader(GL.GL_VERTEX_SHADER, _VERTEX_SHADER),
               compile_shader(GL.GL_FRAGMENT_SHADER, _FRAGMENT_SHADER)]
    for s in shaders:
        GL.glAttachShader(program, s)
    GL.glLinkProgram(program)
    if not GL.glGetProgramiv(program, GL.GL_LINK_STATUS):
        raise RuntimeError(f"OpenGL program did not link: {GL.glGetProgramInfoLog(program).decode()[:200]}")
    for s in shaders:
        GL.glDeleteShader(s)
    return program
