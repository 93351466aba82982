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
from typing import Optional, Sequence, Tuple

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
uniform mat4 world_to_clip;
out vec3 v_world;
void main() {
    v_world = position;
    gl_Position = world_to_clip * vec4(position, 1.0);
}
"""

# The bounds pass: every hull fragment writes (-its distance, its distance) into a two-channel float
# target with MAX blending, so one pass over the hull leaves per pixel the nearest surface within
# the ray interval (a surface beyond ray_end is out of the march's reach; -1e30 where none) and the
# farthest surface (beyond it nothing is above the hull's level, so the march may stop there; a
# surface beyond ray_end still bounds it, at the end). No depth test: with the march in its own
# full-screen pass, each pixel marches once however many hull layers overlap.
_BOUNDS_SHADER = """
#version 330 core
in vec3 v_world;
uniform vec3 eye;
uniform vec2 ray_range;
layout(location = 0) out vec4 out_bounds;
void main() {
    float dist = length(v_world - eye);
    out_bounds = vec4(dist > ray_range.y ? -1e30 : -dist, dist, 0.0, 0.0);
}
"""

# One triangle that covers the viewport: the march runs once per pixel.
_FULLSCREEN_VERTEX_SHADER = """
#version 330 core
void main() {
    vec2 corner = vec2(float((gl_VertexID & 1) << 2) - 1.0, float((gl_VertexID & 2) << 1) - 1.0);
    gl_Position = vec4(corner, 0.0, 1.0);
}
"""

_FRAGMENT_SHADER = """
#version 330 core
uniform vec3 eye;
uniform vec2 ray_range;
uniform mat4 clip_to_world;     // the inverse of the hull pass's world_to_clip: pixel -> its ray
uniform vec2 viewport;
uniform sampler3D volume;       // rgb, activated density; texel centres on the probe lattice
uniform vec3 tex_scale;         // world point -> texture coordinate: p * tex_scale + tex_offset
uniform vec3 tex_offset;
uniform float step_len;
uniform float start_back;
uniform int max_steps;
uniform int double_every;       // > 0: the step doubles after every this many steps, counted from where
                                // the ray's opacity first passes 0.001 (a haze is crossed in few steps)
uniform float min_transmittance;
uniform sampler2D bounds;       // per pixel: -(nearest hull distance within the interval), farthest one
uniform int want_normals;       // 1: the normal is -grad(density) where the ray gathers the most
uniform float texel;            // one texel in texture coordinates: the differences' half-width
uniform int coarse_levels;      // 0..3: how many coarser copies of the volume the march may step through
uniform vec3 atlas_size;        // texels of the atlas holding level 0 and the coarse levels along r
uniform float level_size[4];    // texels per axis of level k (level k: 2^k texels per texel, mean
uniform float level_offset[4];  // density, density-weighted colour), and where it starts along r
uniform sampler3D peaks;        // per texel of level 0, channel k - 1: the spread (largest - smallest)
                                // of the density within 2^(k+1) + 1 texels along each axis (the reach
                                // of a level-k step)
uniform float coarse_tolerance;
layout(location = 0) out vec4 out_color;
layout(location = 1) out vec4 out_geometry;

// The coarsest level on which a step from q (one level-k texel long) times the spread of the density
// around it is at most `coarse_tolerance`: there the level's mean density (and density-weighted
// colour) over the step is what the integral needs, and blurring the density over 2^k texels moves
// at most that much optical depth; so a smooth haze is crossed in steps of 2^k texels, while at an
// edge or a surface, thin or opaque, the ray keeps the full resolution.
int thin_level(vec3 q) {
    if (coarse_levels == 0) return 0;
    ivec3 size = textureSize(peaks, 0);
    vec3 moved = texelFetch(peaks, clamp(ivec3(q * vec3(size)), ivec3(0), size - 1), 0).rgb
                 * step_len * vec3(2.0, 4.0, 8.0);
    if (coarse_levels >= 3 && moved.b <= coarse_tolerance) return 3;
    if (coarse_levels >= 2 && moved.g <= coarse_tolerance) return 2;
    if (moved.r <= coarse_tolerance) return 1;
    return 0;
}

// Level `lod` at texture coordinate q (level 0's: texel centres at (i + 1/2) / n), trilinear, clamped
// to the level's edge texels. All levels share one texture: the software rasteriser (llvmpipe) runs
// every texture fetch of a loop's body whatever the branches say, so one fetch must serve every level
// (one texture per level made each step pay for all of them; a mipmap is several times slower there).
vec4 sample_level(int lod, vec3 q) {
    float m = level_size[lod];
    vec3 texel_pos = clamp(q * m, vec3(0.5), vec3(m - 0.5)) + vec3(0.0, 0.0, level_offset[lod]);
    return texture(volume, texel_pos / atlas_size);
}

void main() {
    vec2 hull = texelFetch(bounds, ivec2(gl_FragCoord.xy), 0).rg;
    if (hull.r < -1e29) discard;        // no hull within the ray interval: nothing to gather
    // the ray through this pixel's centre (the projection puts it on the centre's NDC)
    vec4 far_point = clip_to_world * vec4(2.0 * gl_FragCoord.xy / viewport - 1.0, 1.0, 1.0);
    vec3 dir = normalize(far_point.xyz / far_point.w - eye);
    float t0 = max(-hull.r - start_back, ray_range.x);
    float t_end = min(hull.g + start_back, ray_range.y);
    float trans = 1.0;
    vec3 color = vec3(0.0);
    float depth = 0.0;
    float t_start = t0;
    float doubled = step_len;           // the step that the doubling has reached
    int counted = 0;                    // steps since the ray first met some density
    float best_weight = 0.0;            // the step that gathers the most, and where it samples
    vec3 best_q = vec3(0.0);
    for (int i = 0; i < max_steps; ++i) {
        if (double_every > 0 && counted > 0 && counted % double_every == 0) doubled *= 2.0;
        // the volume is stored [x][y][z] with z fastest: z is the texture's s coordinate
        int lod = thin_level(((eye + t_start * dir) * tex_scale + tex_offset).zyx);
        // the last step ends at t_end: a long step would otherwise leave up to its length out
        float dt = min(max(doubled, step_len * float(1 << lod)), t_end - t_start);
        if (dt <= 0.0) break;
        float t = t_start + 0.5 * dt;   // the midpoint of this step
        t_start += dt;
        vec3 q = ((eye + t * dir) * tex_scale + tex_offset).zyx;
        vec4 s = sample_level(lod, q);
        float alpha = 1.0 - exp(-max(s.a, 0.0) * dt);
        float weight = trans * alpha;
        color += weight * s.rgb;
        depth += weight * t;
        if (weight > best_weight) {
            best_weight = weight;
            best_q = q;
        }
        trans *= 1.0 - alpha;
        if (counted > 0 || trans < 0.999) counted += 1;
        if (trans < min_transmittance) break;
    }
    // The normal is -grad(density) by central differences on level 0, where the ray gathers the most
    // (the surface, on an opaque object; inside a haze the strongest step), evaluated once per ray:
    // differences at every step would multiply the loop's fetches by seven, and llvmpipe runs them
    // for every step, wanted or not. Scaled to the opacity, so that the caller can add what the rest
    // of the ray sees, as the volume renderer does.
    vec3 n = vec3(0.0);
    if (want_normals == 1) {
        // q is (z, y, x): the differences along q's axes give the gradient's z, y, x
        vec3 q = best_q;
        vec3 g = vec3(sample_level(0, q + vec3(0.0, 0.0, texel)).a - sample_level(0, q - vec3(0.0, 0.0, texel)).a,
                      sample_level(0, q + vec3(0.0, texel, 0.0)).a - sample_level(0, q - vec3(0.0, texel, 0.0)).a,
                      sample_level(0, q + vec3(texel, 0.0, 0.0)).a - sample_level(0, q - vec3(texel, 0.0, 0.0)).a);
        n = -g;
    }
    float n_len = length(n);
    out_color = vec4(color, 1.0 - trans);
    out_geometry = vec4(n_len > 0.0 ? n / n_len * (1.0 - trans) : vec3(0.0), depth);
}
"""


class HullMarcher:
    """A closed hull mesh and a baked volume uploaded once; each pixel whose ray meets the hull
    integrates the volume along the ray from just before the hit.

        marcher = HullMarcher(vertices, faces, volume, (lo, hi))
        color, geometry = marcher.draw(world_to_clip, eye, (near, far), (h, w), step, start_back, steps,
                                       normals=False, double_every=0)
        # color [h, w, 4]: premultiplied rgb and opacity (0 where the ray misses the hull);
        # geometry [h, w, 4]: unit normal x opacity (-grad density where the ray gathers the most;
        # zero with normals=False) and sum of weight x distance; row 0 at top

    `volume` [n, n, n, 4] float (rgb, activated density per world unit) sampled at the lattice
    lo + i (hi - lo) / (n - 1), indexed [x, y, z]; between lattice points it is trilinear (the
    texture unit's filtering), outside [lo, hi] it is the nearest face's value. `coarse` (up to 3
    levels, [n >> k]^3 x 4 each) and `peaks` ([n]^3 x 4) let the march cross a thin haze in steps of
    2^k texels where the density is smooth (core.preview.coarse_levels makes them; `coarse_tolerance`
    is the test). One pixel
    is one ray through its centre (no multisampling), as in the volume renderer. Two passes: the
    hull's nearest and farthest distance per pixel (one pass, MAX blending), then the march, once
    per pixel (a full-screen triangle).
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, volume: np.ndarray,
                 box: Tuple[np.ndarray, np.ndarray], min_transmittance: float = 1e-3,
                 coarse: Sequence[np.ndarray] = (), peaks: Optional[np.ndarray] = None,
                 coarse_tolerance: float = 0.0):
        self.ctx = gl_context()
        GL = self.ctx.GL
        positions = np.ascontiguousarray(np.asarray(vertices, np.float32))
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
        self.coarse_levels = _check_coarse_levels(n, coarse, peaks)
        self.coarse_tolerance = float(coarse_tolerance)
        self.num_indices = int(index.size)
        self._size: Tuple[int, int] = (0, 0)
        self._targets = None
        with self.ctx.current():
            self.bounds_program = _program(GL, _VERTEX_SHADER, _BOUNDS_SHADER)
            self.program = _program(GL, _FULLSCREEN_VERTEX_SHADER, _FRAGMENT_SHADER)
            self.vao = GL.glGenVertexArrays(1)
            GL.glBindVertexArray(self.vao)
            self.vbo, self.ibo = GL.glGenBuffers(2)
            GL.glBindBuffer(GL.GL_ARRAY_BUFFER, self.vbo)
            GL.glBufferData(GL.GL_ARRAY_BUFFER, positions.nbytes, positions, GL.GL_STATIC_DRAW)
            GL.glBindBuffer(GL.GL_ELEMENT_ARRAY_BUFFER, self.ibo)
            GL.glBufferData(GL.GL_ELEMENT_ARRAY_BUFFER, index.nbytes, index, GL.GL_STATIC_DRAW)
            GL.glEnableVertexAttribArray(0)
            GL.glVertexAttribPointer(0, 3, GL.GL_FLOAT, GL.GL_FALSE, 3 * 4, ctypes.c_void_p(0))
            GL.glBindVertexArray(0)
            GL.glPixelStorei(GL.GL_UNPACK_ALIGNMENT, 1)
            atlas, self.level_size, self.level_offset = _atlas(volume, coarse)
            self.atlas_size = (atlas.shape[2], atlas.shape[1], atlas.shape[0])   # s, t, r
            self.texture = _texture_3d(GL, atlas, GL.GL_LINEAR)
            # read texel by texel, in texture unit 2 (an empty placeholder without coarse levels)
            self.peaks = _texture_3d(GL, peaks if self.coarse_levels else np.zeros((1, 1, 1, 4)), GL.GL_NEAREST)
            self.bounds_loc = {name: GL.glGetUniformLocation(self.bounds_program, name)
                               for name in ("world_to_clip", "eye", "ray_range")}
            self.loc = {name: GL.glGetUniformLocation(self.program, name)
                        for name in ("clip_to_world", "viewport", "eye", "ray_range", "volume", "tex_scale",
                                     "tex_offset", "step_len", "start_back", "max_steps", "min_transmittance",
                                     "bounds", "want_normals", "texel", "double_every", "coarse_levels",
                                     "atlas_size", "level_size", "level_offset", "peaks", "coarse_tolerance")}

    def _framebuffer(self, size: Tuple[int, int]) -> None:
        """The march's two float targets and the bounds texture (with its own framebuffer), for `size`."""
        GL = self.ctx.GL
        if self._size == size:
            return
        self._release_targets()
        h, w = size
        self.fbo = GL.glGenFramebuffers(1)
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self.fbo)
        self._targets = GL.glGenRenderbuffers(2)
        for i in range(2):
            GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, self._targets[i])
            GL.glRenderbufferStorage(GL.GL_RENDERBUFFER, GL.GL_RGBA32F, w, h)
            GL.glFramebufferRenderbuffer(GL.GL_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0 + i, GL.GL_RENDERBUFFER,
                                         self._targets[i])
        _check_framebuffer(GL)
        GL.glDrawBuffers(2, [GL.GL_COLOR_ATTACHMENT0, GL.GL_COLOR_ATTACHMENT1])
        self.bounds_fbo = GL.glGenFramebuffers(1)
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self.bounds_fbo)
        self.bounds_texture = GL.glGenTextures(1)
        GL.glBindTexture(GL.GL_TEXTURE_2D, self.bounds_texture)
        GL.glTexParameteri(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_MIN_FILTER, GL.GL_NEAREST)
        GL.glTexParameteri(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_MAG_FILTER, GL.GL_NEAREST)
        GL.glTexImage2D(GL.GL_TEXTURE_2D, 0, GL.GL_RG32F, w, h, 0, GL.GL_RG, GL.GL_FLOAT, None)
        GL.glBindTexture(GL.GL_TEXTURE_2D, 0)
        GL.glFramebufferTexture2D(GL.GL_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, GL.GL_TEXTURE_2D, self.bounds_texture, 0)
        _check_framebuffer(GL)
        GL.glDrawBuffers(1, [GL.GL_COLOR_ATTACHMENT0])
        self._size = size

    def _release_targets(self) -> None:
        GL = self.ctx.GL
        if self._targets is not None:
            GL.glDeleteRenderbuffers(2, self._targets)
            GL.glDeleteTextures(1, [self.bounds_texture])
            GL.glDeleteFramebuffers(2, [self.fbo, self.bounds_fbo])
            self._targets, self._size = None, (0, 0)

    def draw(self, world_to_clip: np.ndarray, eye: np.ndarray, ray_range: Tuple[float, float],
             size: Tuple[int, int], step: float, start_back: float, max_steps: int,
             normals: bool = False, double_every: int = 0) -> Tuple[np.ndarray, np.ndarray]:
        GL = self.ctx.GL
        h, w = size
        eye3 = [float(v) for v in eye]
        with self.ctx.current():
            self._framebuffer((h, w))
            GL.glViewport(0, 0, w, h)
            GL.glDisable(GL.GL_DEPTH_TEST)
            GL.glDisable(GL.GL_CULL_FACE)   # a camera inside the hull sees its inside: both faces count
            GL.glBindVertexArray(self.vao)
            # pass 1: the hull's nearest (within the interval) and farthest distance per pixel
            GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self.bounds_fbo)
            GL.glClearColor(-1e30, -1e30, 0.0, 0.0)
            GL.glClear(GL.GL_COLOR_BUFFER_BIT)
            GL.glEnable(GL.GL_BLEND)
            GL.glBlendEquation(GL.GL_MAX)
            GL.glUseProgram(self.bounds_program)
            GL.glUniformMatrix4fv(self.bounds_loc["world_to_clip"], 1, GL.GL_TRUE,
                                  np.ascontiguousarray(world_to_clip, np.float32))
            GL.glUniform3f(self.bounds_loc["eye"], *eye3)
            GL.glUniform2f(self.bounds_loc["ray_range"], float(ray_range[0]), float(ray_range[1]))
            GL.glDrawElements(GL.GL_TRIANGLES, self.num_indices, GL.GL_UNSIGNED_INT, ctypes.c_void_p(0))
            GL.glDisable(GL.GL_BLEND)
            GL.glBlendEquation(GL.GL_FUNC_ADD)
            # pass 2: the march, once per pixel
            GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self.fbo)
            GL.glClearColor(0.0, 0.0, 0.0, 0.0)
            GL.glClear(GL.GL_COLOR_BUFFER_BIT)
            GL.glUseProgram(self.program)
            self._set_march_uniforms(world_to_clip, eye3, ray_range, (h, w), step, start_back, max_steps,
                                     normals, double_every)
            GL.glActiveTexture(GL.GL_TEXTURE0)
            GL.glBindTexture(GL.GL_TEXTURE_3D, self.texture)
            GL.glActiveTexture(GL.GL_TEXTURE1)
            GL.glBindTexture(GL.GL_TEXTURE_2D, self.bounds_texture)
            GL.glActiveTexture(GL.GL_TEXTURE2)
            GL.glBindTexture(GL.GL_TEXTURE_3D, self.peaks)
            GL.glDrawArrays(GL.GL_TRIANGLES, 0, 3)
            GL.glBindVertexArray(0)
            GL.glBindTexture(GL.GL_TEXTURE_3D, 0)
            GL.glActiveTexture(GL.GL_TEXTURE1)
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

    def _set_march_uniforms(self, world_to_clip, eye3, ray_range, size, step, start_back, max_steps,
                            normals, double_every) -> None:
        GL, loc = self.ctx.GL, self.loc
        h, w = size
        clip_to_world = np.linalg.inv(np.asarray(world_to_clip, np.float64))
        GL.glUniformMatrix4fv(loc["clip_to_world"], 1, GL.GL_TRUE, np.ascontiguousarray(clip_to_world, np.float32))
        GL.glUniform2f(loc["viewport"], float(w), float(h))
        GL.glUniform3f(loc["eye"], *eye3)
        GL.glUniform2f(loc["ray_range"], float(ray_range[0]), float(ray_range[1]))
        GL.glUniform1i(loc["volume"], 0)
        GL.glUniform1i(loc["bounds"], 1)
        GL.glUniform1i(loc["peaks"], 2)
        GL.glUniform3f(loc["tex_scale"], *(float(v) for v in self.tex_scale))
        GL.glUniform3f(loc["tex_offset"], *(float(v) for v in self.tex_offset))
        GL.glUniform1f(loc["step_len"], float(step))
        GL.glUniform1f(loc["start_back"], float(start_back))
        GL.glUniform1i(loc["max_steps"], int(max_steps))
        GL.glUniform1i(loc["double_every"], int(double_every))
        GL.glUniform1f(loc["min_transmittance"], self.min_transmittance)
        GL.glUniform1i(loc["want_normals"], int(bool(normals)))
        GL.glUniform1f(loc["texel"], self.texel)
        GL.glUniform1i(loc["coarse_levels"], self.coarse_levels)
        GL.glUniform1f(loc["coarse_tolerance"], self.coarse_tolerance)
        GL.glUniform3f(loc["atlas_size"], *(float(v) for v in self.atlas_size))
        GL.glUniform1fv(loc["level_size"], 4, np.asarray(self.level_size, np.float32))
        GL.glUniform1fv(loc["level_offset"], 4, np.asarray(self.level_offset, np.float32))

    def release(self) -> None:
        """Free the GPU-side buffers now (they are also freed with the context at exit)."""
        GL = self.ctx.GL
        with self.ctx.current():
            self._release_targets()
            GL.glDeleteBuffers(2, [self.vbo, self.ibo])
            GL.glDeleteVertexArrays(1, [self.vao])
            GL.glDeleteTextures(2, [self.texture, self.peaks])
            GL.glDeleteProgram(self.program)
            GL.glDeleteProgram(self.bounds_program)


def _texture_3d(GL, data: np.ndarray, filtering) -> int:
    """A 3-D float texture of `data` [d, h, w] or [d, h, w, 4] (w the texture's s axis), one level, edges
    clamped; `filtering` GL_LINEAR (trilinear) or GL_NEAREST."""
    data = np.ascontiguousarray(data, np.float32)
    d, h, w = data.shape[:3]
    internal, fmt = (GL.GL_RGBA32F, GL.GL_RGBA) if data.ndim == 4 else (GL.GL_R32F, GL.GL_RED)
    texture = GL.glGenTextures(1)
    GL.glBindTexture(GL.GL_TEXTURE_3D, texture)
    for key, value in ((GL.GL_TEXTURE_MIN_FILTER, filtering), (GL.GL_TEXTURE_MAG_FILTER, filtering),
                       (GL.GL_TEXTURE_WRAP_S, GL.GL_CLAMP_TO_EDGE), (GL.GL_TEXTURE_WRAP_T, GL.GL_CLAMP_TO_EDGE),
                       (GL.GL_TEXTURE_WRAP_R, GL.GL_CLAMP_TO_EDGE)):
        GL.glTexParameteri(GL.GL_TEXTURE_3D, key, value)
    GL.glTexImage3D(GL.GL_TEXTURE_3D, 0, internal, w, h, d, 0, fmt, GL.GL_FLOAT, data)
    GL.glBindTexture(GL.GL_TEXTURE_3D, 0)
    return texture


def _atlas(volume: np.ndarray, coarse: Sequence[np.ndarray]) -> Tuple[np.ndarray, list, list]:
    """One array [sum of sizes, n, n, 4] holding level 0 [n, n, n, 4] and then each coarse level
    [m, m, m, 4] along the first axis (the texture's r), the rest padded with edge values; and per level
    (4 entries, unused ones repeating level 0) its size and where it starts along the first axis."""
    n = volume.shape[0]
    blocks = [volume] + [np.pad(level, [(0, 0), (0, n - level.shape[1]), (0, n - level.shape[2]), (0, 0)], mode="edge")
                         for level in coarse]
    sizes = [float(b.shape[0]) for b in blocks]
    offsets = list(np.cumsum([0.0] + sizes[:-1]))
    sizes += [sizes[0]] * (4 - len(sizes))
    offsets += [0.0] * (4 - len(offsets))
    return np.concatenate(blocks, axis=0), sizes, [float(o) for o in offsets]


def _check_coarse_levels(n: int, coarse: Sequence[np.ndarray], peaks: Optional[np.ndarray]) -> int:
    """How many coarse levels (0..3) the march may use, after checking their shapes: level k is
    [n >> k]^3 x 4 and the peaks [n]^3 x 4 (channel k - 1 for level k)."""
    if len(coarse) > 3:
        raise ValueError(f"at most 3 coarse levels, got {len(coarse)}")
    for k, level in enumerate(coarse, start=1):
        m = n >> k
        if level.shape != (m, m, m, 4):
            raise ValueError(f"coarse level {k} must be [{m}, {m}, {m}, 4], got {list(level.shape)}")
    if coarse and (peaks is None or peaks.shape != (n, n, n, 4)):
        raise ValueError(f"the peaks must be [{n}, {n}, {n}, 4] with coarse levels, got "
                         f"{None if peaks is None else list(peaks.shape)}")
    return len(coarse)


def _check_framebuffer(GL) -> None:
    status = GL.glCheckFramebufferStatus(GL.GL_FRAMEBUFFER)
    if status != GL.GL_FRAMEBUFFER_COMPLETE:
        raise RuntimeError(f"OpenGL framebuffer incomplete (status {status:#x})")


def _program(GL, vertex_source: str, fragment_source: str):
    def compile_shader(kind, source):
        shader = GL.glCreateShader(kind)
        GL.glShaderSource(shader, source)
        GL.glCompileShader(shader)
        if not GL.glGetShaderiv(shader, GL.GL_COMPILE_STATUS):
            raise RuntimeError(f"OpenGL shader did not compile: {GL.glGetShaderInfoLog(shader).decode()[:200]}")
        return shader

    program = GL.glCreateProgram()
    shaders = [compile_shader(GL.GL_VERTEX_SHADER, vertex_source),
               compile_shader(GL.GL_FRAGMENT_SHADER, fragment_source)]
    for s in shaders:
        GL.glAttachShader(program, s)
    GL.glLinkProgram(program)
    if not GL.glGetProgramiv(program, GL.GL_LINK_STATUS):
        raise RuntimeError(f"OpenGL program did not link: {GL.glGetProgramInfoLog(program).decode()[:200]}")
    for s in shaders:
        GL.glDeleteShader(s)
    return program
