"""Headless OpenGL: an EGL context with no window, a float framebuffer and a triangle-mesh drawer.

Used by the preview path (`core.preview`) to rasterise a per-latent coloured mesh in a few
milliseconds. EGL needs no display, so the same code runs in a terminal, under a desktop viewer (whose
own GL context lives in another thread and is untouched) and on a GPU server:

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
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    import OpenGL
    from OpenGL import EGL  # PyOpenGL's EGL wrappers need its error checker: imported before it is off
    # Error checking after every GL call costs more than the draw itself on small meshes; the few
    # calls whose failure matters are checked explicitly (shader compile/link, framebuffer status).
    if "OpenGL.GL" not in __import__("sys").modules:
        OpenGL.ERROR_CHECKING = False
    from OpenGL import GL
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
            from OpenGL.EGL.EXT.device_base import eglQueryDevicesEXT
            from OpenGL.EGL.EXT.platform_base import eglGetPlatformDisplayEXT
            from OpenGL.EGL.EXT.platform_device import EGL_PLATFORM_DEVICE_EXT
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
layout(location = 1) in vec4 color;
layout(location = 2) in vec3 normal;
uniform mat4 world_to_clip;
out vec3 v_world;
out vec4 v_color;
out vec3 v_normal;
void main() {
    v_world = position;
    v_color = color;
    v_normal = normal;
    gl_Position = world_to_clip * vec4(position, 1.0);
}
"""

# Two float targets: (colour, coverage) and (unit normal, distance from the camera centre along the
# ray). Fragments outside the renderer's ray interval are dropped, as the volume renderer ignores them.
_FRAGMENT_SHADER = """
#version 330 core
in vec3 v_world;
in vec4 v_color;
in vec3 v_normal;
uniform vec3 eye;
uniform vec2 ray_range;
layout(location = 0) out vec4 out_color;
layout(location = 1) out vec4 out_geometry;
void main() {
    float dist = length(v_world - eye);
    if (dist < ray_range.x || dist > ray_range.y) discard;
    out_color = v_color;
    out_geometry = vec4(normalize(v_normal), dist);
}
"""


class MeshRasterizer:
    """A coloured triangle mesh uploaded once, drawn from any camera into float images.

        raster = MeshRasterizer(vertices, faces, colors, normals)   # world units, any float colours
        color, geometry = raster.draw(world_to_clip, eye, (near, far), (h, w))
        # color [h, w, 4] (rgb, alpha: 0 where no triangle, else the vertex alpha interpolated; colors
        # [V, 3] mean alpha 1), geometry [h, w, 4] (normal xyz, distance); row 0 at top

    One pixel is one sample at its centre (no multisampling), as the volume renderer shoots one ray
    through each pixel centre.
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray, normals: np.ndarray):
        self.ctx = gl_context()
        GL = self.ctx.GL
        colors = np.asarray(colors, np.float32)
        if colors.shape[1] == 3:  # opaque: alpha 1
            colors = np.concatenate([colors, np.ones_like(colors[:, :1])], axis=1)
        data = np.concatenate([np.asarray(vertices, np.float32), colors, np.asarray(normals, np.float32)], axis=1)
        index = np.ascontiguousarray(np.asarray(faces, np.uint32).reshape(-1))
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
            stride = 10 * 4
            for loc, (size, offset) in enumerate(((3, 0), (4, 3), (3, 7))):  # position, rgba, normal
                GL.glEnableVertexAttribArray(loc)
                GL.glVertexAttribPointer(loc, size, GL.GL_FLOAT, GL.GL_FALSE, stride, ctypes.c_void_p(4 * offset))
            GL.glBindVertexArray(0)
            self.loc_clip = GL.glGetUniformLocation(self.program, "world_to_clip")
            self.loc_eye = GL.glGetUniformLocation(self.program, "eye")
            self.loc_range = GL.glGetUniformLocation(self.program, "ray_range")

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
        status = GL.glCheckFramebufferStatus(GL.GL_FRAMEBUFFER)
        if status != GL.GL_FRAMEBUFFER_COMPLETE:
            raise RuntimeError(f"OpenGL framebuffer incomplete (status {status:#x})")
        GL.glDrawBuffers(2, [GL.GL_COLOR_ATTACHMENT0, GL.GL_COLOR_ATTACHMENT1])
        self._size = size

    def _release_targets(self) -> None:
        GL = self.ctx.GL
        if self._targets is not None:
            GL.glDeleteRenderbuffers(3, self._targets)
            GL.glDeleteFramebuffers(1, [self.fbo])
            self._targets, self._size = None, (0, 0)

    def draw(self, world_to_clip: np.ndarray, eye: np.ndarray, ray_range: Tuple[float, float],
             size: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
        GL = self.ctx.GL
        h, w = size
        with self.ctx.current():
            self._framebuffer((h, w))
            GL.glViewport(0, 0, w, h)
            GL.glEnable(GL.GL_DEPTH_TEST)
            GL.glDepthFunc(GL.GL_LESS)
            # Marching-cubes meshes of a clipped box are closed, but a camera inside the scene box sees
            # their inside: draw both faces, as a ray would hit either.
            GL.glDisable(GL.GL_CULL_FACE)
            GL.glClearColor(0.0, 0.0, 0.0, 0.0)
            GL.glClear(GL.GL_COLOR_BUFFER_BIT | GL.GL_DEPTH_BUFFER_BIT)
            GL.glUseProgram(self.program)
            GL.glUniformMatrix4fv(self.loc_clip, 1, GL.GL_TRUE, np.ascontiguousarray(world_to_clip, np.float32))
            GL.glUniform3f(self.loc_eye, *(float(v) for v in eye))
            GL.glUniform2f(self.loc_range, float(ray_range[0]), float(ray_range[1]))
            GL.glBindVertexArray(self.vao)
            GL.glDrawElements(GL.GL_TRIANGLES, self.num_indices, GL.GL_UNSIGNED_INT, ctypes.c_void_p(0))
            GL.glBindVertexArray(0)
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
            GL.glDeleteProgram(self.program)


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
