"""Build ``libfastgex``: cffi embedding mode generates the C module, the system C compiler links it.

cffi's ``compile()`` drives the compiler through setuptools/distutils, which Python 3.12+
no longer ships; ``emit_c_code()`` plus one explicit compiler call needs neither and
gives the flags embedding needs (``-lpython``, an rpath to it, hidden visibility for
everything but the API). The generated C is the same either way.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import shutil
import site
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import cffi

import fastgex

PACKAGE_DIR = Path(__file__).resolve().parent
HEADER = PACKAGE_DIR / "fastgex.h"
C_SOURCE = PACKAGE_DIR / "_capi.c"
MODULE_NAME = "_fastgex_capi"
LIBRARY_NAME = "libfastgex.so"

#: Declarations cffi parses (it cannot read fastgex.h's preprocessor lines).
_CDEF = """
struct ArrowSchema {
  const char* format; const char* name; const char* metadata; int64_t flags;
  int64_t n_children; struct ArrowSchema** children; struct ArrowSchema* dictionary;
  void (*release)(struct ArrowSchema*); void* private_data;
};
struct ArrowArray {
  int64_t length; int64_t null_count; int64_t offset; int64_t n_buffers; int64_t n_children;
  const void** buffers; struct ArrowArray** children; struct ArrowArray* dictionary;
  void (*release)(struct ArrowArray*); void* private_data;
};
struct ArrowArrayStream {
  int (*get_schema)(struct ArrowArrayStream*, struct ArrowSchema* out);
  int (*get_next)(struct ArrowArrayStream*, struct ArrowArray* out);
  const char* (*get_last_error)(struct ArrowArrayStream*);
  void (*release)(struct ArrowArrayStream*); void* private_data;
};
typedef struct fastgex_options {
  uint32_t version; int32_t convention; int32_t unit; int32_t gamma_source;
  double spot; int64_t snapshot_time_ns; const char* extra;
} fastgex_options;
typedef double (*fastgex_gamma_fn)(double, double, double, double, double, double);
typedef double (*fastgex_black76_gamma_fn)(double, double, double, double, double);
void fastgex__set_error(const char* message);
void fastgex__set_functions(fastgex_gamma_fn gamma, fastgex_black76_gamma_fn black76);
"""

#: The entry points implemented in Python (fastgex.capi._embedded.register).
_EMBEDDING_API = """
int fastgex__py_init(int* reached);
int fastgex__py_gex(int* reached, struct ArrowArrayStream* chain, struct ArrowArray* array,
                    struct ArrowSchema* schema, const fastgex_options* options,
                    struct ArrowArrayStream* by_underlying, struct ArrowArrayStream* by_strike,
                    struct ArrowArrayStream* dropped);
int fastgex__py_levels(int* reached, struct ArrowArrayStream* chain,
                       const fastgex_options* options, struct ArrowArrayStream* levels,
                       struct ArrowArrayStream* by_strike, struct ArrowArrayStream* profile);
int fastgex__py_gamma(int* reached, int64_t n, double spot, const double* strike,
                      const double* vol, const double* time_to_expiry, double rate,
                      double dividend_yield, double* gamma, int64_t* invalid);
int fastgex__py_contract_gex(int* reached, int64_t n, double spot, const double* strike,
                             const double* vol, const double* time_to_expiry,
                             const double* open_interest, const int8_t* is_call,
                             double multiplier, double rate, double dividend_yield,
                             int32_t convention, int32_t unit, double* gex, double* total,
                             int64_t* invalid);
"""

_ENTRY_POINTS = (
    "fastgex__py_init",
    "fastgex__py_gex",
    "fastgex__py_levels",
    "fastgex__py_gamma",
    "fastgex__py_contract_gex",
)

#: Runs once inside the embedded interpreter, before the first call reaches Python.
#: It must not raise: cffi would only print the error and every call would return 0.
_INIT_CODE = """
import os, site, sys

_override = os.environ.get("FASTGEX_PYTHONPATH")
for _path in (_override.split(os.pathsep) if _override is not None else {paths!r}):
    if _path and os.path.isdir(_path):
        site.addsitedir(_path)  # also runs .pth files (editable installs)
_cache = os.environ.get("FASTGEX_NUMBA_CACHE_DIR") or {cache!r}
if _cache and not os.environ.get("NUMBA_CACHE_DIR"):
    os.environ["NUMBA_CACHE_DIR"] = _cache  # before numba is imported

from {module} import ffi, lib

try:
    from fastgex.capi import _embedded

    _embedded.register(ffi, lib)
except BaseException as _error:
    _message = (
        "fastgex could not be imported by the embedded interpreter "
        f"({{type(_error).__name__}}: {{_error}}); sys.path={{sys.path!r}}; "
        "set FASTGEX_PYTHONPATH to the site-packages that holds fastgex"
    )

    def _failed(reached, *args, _message=_message):
        reached[0] = 1
        lib.fastgex__set_error(_message.encode("utf-8", "replace"))
        return 2  # FASTGEX_ERROR_PYTHON_START

    for _name in {entry_points!r}:
        ffi.def_extern(name=_name)(_failed)
"""


@dataclass(frozen=True)
class BuildResult:
    """Files written by :func:`fastgex.capi.build`.

    Attributes
    ----------
    library : pathlib.Path
        ``lib/libfastgex.so``.
    header : pathlib.Path
        ``include/fastgex.h``.
    pkgconfig : pathlib.Path
        ``lib/pkgconfig/fastgex.pc``.
    cmake : pathlib.Path
        ``lib/cmake/fastgex/fastgexConfig.cmake``.
    """

    library: Path
    header: Path
    pkgconfig: Path
    cmake: Path


def default_paths() -> list[str]:
    """Where the embedded interpreter finds fastgex and its dependencies (this Python's)."""
    candidates = [*site.getsitepackages()]
    for key in ("purelib", "platlib"):
        candidates.append(sysconfig.get_paths()[key])
    # An editable or source checkout: the directory that holds the fastgex package.
    candidates.append(str(Path(fastgex.__file__).resolve().parents[1]))
    unique: list[str] = []
    for path in candidates:
        if path not in unique and Path(path).is_dir():
            unique.append(path)
    return unique


def _base_executable() -> str:
    """The interpreter behind this one (outside any virtualenv: no pyvenv.cfg next to it)."""
    return str(getattr(sys, "_base_executable", None) or sys.executable)


def _c_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _python_link_flags() -> list[str]:
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        raise RuntimeError(
            "this Python has no shared libpython (built without --enable-shared); "
            "embedding it needs one"
        )
    libdir = sysconfig.get_config_var("LIBDIR")
    version = sysconfig.get_config_var("LDVERSION") or sysconfig.get_python_version()
    return [f"-L{libdir}", f"-lpython{version}", f"-Wl,-rpath,{libdir}"]


def _compiler() -> list[str]:
    configured = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    command = shlex.split(configured)
    if shutil.which(command[0]) is None:
        command = ["cc"]
    return command


def build(
    out: str | os.PathLike[str],
    *,
    paths: list[str] | None = None,
    numba_cache_dir: str | None = None,
    python_home: str | None = None,
) -> BuildResult:
    """Build ``libfastgex``, its header, a pkg-config file and a CMake package file.

    Parameters
    ----------
    out : path
        Output prefix: ``lib/``, ``include/`` and ``build/`` (the generated C) are
        created under it.
    paths : list of str, optional
        Directories the embedded interpreter adds with ``site.addsitedir``.
        Default: this interpreter's site-packages and the directory holding fastgex.
        ``FASTGEX_PYTHONPATH`` (``os.pathsep``-separated) replaces them at run time.
    numba_cache_dir : str, optional
        ``NUMBA_CACHE_DIR`` for hosts that cannot write next to the installed package
        (unless the host sets ``NUMBA_CACHE_DIR`` or ``FASTGEX_NUMBA_CACHE_DIR``).
    python_home : str, optional
        The interpreter's home (default ``sys.base_prefix``); ``FASTGEX_PYTHONHOME`` or
        ``PYTHONHOME`` override it at run time.

    Returns
    -------
    BuildResult
        The paths written.

    Raises
    ------
    RuntimeError
        No shared libpython, or the C compiler failed (its output is in the message).
    """
    prefix = Path(out).resolve()
    lib_dir, include_dir, build_dir = prefix / "lib", prefix / "include", prefix / "build"
    for directory in (lib_dir, include_dir, build_dir):
        directory.mkdir(parents=True, exist_ok=True)
    site_paths = default_paths() if paths is None else list(paths)
    home = sys.base_prefix if python_home is None else python_home

    baked = "\n".join(
        [
            f"#define FASTGEX_BAKED_VERSION {_c_string(fastgex.__version__)}",
            f"#define FASTGEX_BAKED_HOME {_c_string(home)}",
            f"#define FASTGEX_BAKED_PROGRAM {_c_string(_base_executable())}",
            f"#define FASTGEX_BAKED_PATHS {_c_string(':'.join(site_paths))}",
        ]
    )
    ffibuilder = cffi.FFI()
    ffibuilder.cdef(_CDEF)
    ffibuilder.embedding_api(_EMBEDDING_API)
    ffibuilder.set_source(MODULE_NAME, baked + "\n" + C_SOURCE.read_text(encoding="utf-8"))
    ffibuilder.embedding_init_code(
        _INIT_CODE.format(
            paths=site_paths,
            cache=numba_cache_dir or "",
            module=MODULE_NAME,
            entry_points=_ENTRY_POINTS,
        )
    )
    c_file = build_dir / f"{MODULE_NAME}.c"
    with contextlib.redirect_stdout(io.StringIO()):  # cffi prints "generating ..."
        ffibuilder.emit_c_code(str(c_file))

    library = lib_dir / LIBRARY_NAME
    command = [
        *_compiler(),
        "-shared",
        "-fPIC",
        "-O2",
        "-fvisibility=hidden",
        f"-I{PACKAGE_DIR}",
        f"-I{sysconfig.get_paths()['include']}",
        str(c_file),
        "-o",
        str(library),
        *_python_link_flags(),
        "-lpthread",
        "-lm",
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(
            f"compiling libfastgex failed ({shlex.join(command)}):\n{completed.stderr}"
        )

    header = include_dir / "fastgex.h"
    shutil.copyfile(HEADER, header)
    pkgconfig = lib_dir / "pkgconfig" / "fastgex.pc"
    pkgconfig.parent.mkdir(exist_ok=True)
    pkgconfig.write_text(
        f"prefix={prefix}\n"
        "libdir=${prefix}/lib\n"
        "includedir=${prefix}/include\n\n"
        "Name: fastgex\n"
        "Description: dealer gamma exposure (GEX) over option chains, Arrow C interfaces\n"
        f"Version: {fastgex.__version__}\n"
        "Libs: -L${libdir} -Wl,-rpath,${libdir} -lfastgex\n"
        "Cflags: -I${includedir}\n",
        encoding="utf-8",
    )
    cmake = lib_dir / "cmake" / "fastgex" / "fastgexConfig.cmake"
    cmake.parent.mkdir(parents=True, exist_ok=True)
    cmake.write_text(
        "# find_package(fastgex) then target_link_libraries(app PRIVATE fastgex::fastgex)\n"
        'get_filename_component(_fastgex_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." '
        "ABSOLUTE)\n"
        f'set(fastgex_VERSION "{fastgex.__version__}")\n'
        "if(NOT TARGET fastgex::fastgex)\n"
        "  add_library(fastgex::fastgex SHARED IMPORTED)\n"
        "  set_target_properties(fastgex::fastgex PROPERTIES\n"
        '    IMPORTED_LOCATION "${_fastgex_prefix}/lib/libfastgex.so"\n'
        '    INTERFACE_INCLUDE_DIRECTORIES "${_fastgex_prefix}/include")\n'
        "endif()\n",
        encoding="utf-8",
    )
    return BuildResult(library=library, header=header, pkgconfig=pkgconfig, cmake=cmake)
