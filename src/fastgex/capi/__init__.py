"""fastgex as a C library: ``libfastgex`` (cffi embedding) and its header ``fastgex.h``.

Build it with ``python -m fastgex.capi build --out DIR`` or :func:`build`; the embedding
guide in the docs shows C and C++ callers. The library embeds this Python and calls the
public API (:func:`fastgex.gex`, :func:`fastgex.levels`), taking chains and returning
tables through the Arrow C stream / C data interfaces, plus raw-array calls and the
address of the compiled per-contract gamma for callers' own loops.
"""

from __future__ import annotations

from fastgex.capi._build import HEADER, BuildResult, build, default_paths

__all__ = ["HEADER", "BuildResult", "build", "default_paths"]
