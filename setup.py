"""Build nnfast's native extension: C kernels in csrc/ wrapped by Cython in nnfast/_native/.

ISA flags go on the per-ISA kernel files only (never -march=native), so one wheel runs on any
x86-64 and dispatches at run time. Threads come from nnfast's own pool (csrc/parallel.c, on
POSIX threads); without pthreads, or with NNFAST_NO_THREADS=1, the kernels run single-threaded.
"""

import os
import platform
import re
import shutil
import sys
import tempfile

import numpy
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CSRC = "csrc"
CORE = "nnfast._native._core"
CORE_SOURCES = [
    "cpu.c",
    "isa.c",
    "parallel.c",
    "gemm.c",
    "gemm_bf16.c",
    "eltwise.c",
    "conv.c",
    "optim.c",
    "image.c",
]
# Each ISA path's kernel files, by the path's name; they define its kernel tables (empty when
# built without NNF_HAVE_<ID>).
ISA_FILES = ["gemm_kernel_{}.c", "eltwise_kernel_{}.c"]


def read_isas():
    """[(ID, name, features)] from the one list of ISA paths, NNF_ISAS in csrc/cpu.h."""
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), CSRC, "cpu.h")) as f:
        text = f.read()
    block = text[text.index("#define NNF_ISAS(X)") :]
    block = block[: block.index("\n\n")]
    rows = re.findall(r'X\((\w+),\s*(\w+),\s*"([^"]*)"\)', block)
    if not rows:
        raise RuntimeError("setup.py: no ISA rows found in NNF_ISAS (csrc/cpu.h)")
    return [(ident, name, [f for f in feats.split(",") if f]) for ident, name, feats in rows]


ISAS = read_isas()
# Kernel files that need CPU features beyond their path's row: file -> (ID, features). Built
# like a path's files (NNF_HAVE_<ID> and -m<feature>, or without both: an empty kernel); the
# code choosing them checks the CPU for the extra features itself.
_AVX512 = next(feats for ident, _, feats in ISAS if ident == "AVX512")  # its row's features
EXTRA_ISA_FILES = {
    "gemm_bf16_kernel_avx512bf16.c": ("AVX512BF16", ["avx512bf16", "avx512bw", *_AVX512]),
    "conv_winograd_avx512bf16.c": ("AVX512BF16", ["avx512bf16", "avx512bw", *_AVX512]),
    # prfchw: the tile kernel fetches C's lines for writing (every AMX CPU has PREFETCHW)
    "gemm_bf16_kernel_amx.c": (
        "AMX",
        ["amx-tile", "amx-bf16", "prfchw", "avx512bf16", "avx512bw", *_AVX512],
    ),
}
# the baseline path (no features) is built with the core's flags; the others with their own
CORE_SOURCES += [pat.format(name) for _, name, feats in ISAS if not feats for pat in ISA_FILES]
IS_X86_64 = platform.machine().lower() in ("x86_64", "amd64")


def _try_compile(compiler, code, flags, link=False):
    """True if `code` compiles (and links) with `flags`."""
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(code)
        objs = compiler.compile([src], output_dir=tmp, extra_postargs=flags)
        if link:
            compiler.link_executable(objs, os.path.join(tmp, "probe"), extra_postargs=flags)
        return True
    except Exception:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class BuildExt(build_ext):
    def build_extensions(self):
        cc = self.compiler
        unix = cc.compiler_type in ("unix", "mingw32", "cygwin")
        # -fno-trapping-math lets GCC turn float compares into vector selects (max pooling, ReLU)
        # and -fno-math-errno lets it vectorise sqrt (Adam); nnfast reads neither the FP
        # exception flags nor errno.
        base = ["-O3", "-std=gnu11", "-fno-strict-aliasing", "-fno-trapping-math",
                "-fno-math-errno"] if unix else ["/O2"]  # fmt: skip
        threads, thread_macros = [], []
        if unix and not os.environ.get("NNFAST_NO_THREADS"):
            probe = (
                "#include <pthread.h>\n#include <stdatomic.h>\n"
                "static void *f(void *p) { return p; }\n"
                "int main(void) { pthread_t t; _Atomic int a = 0; atomic_fetch_add(&a, 1);\n"
                "  return pthread_create(&t, 0, f, 0) || pthread_join(t, 0); }\n"
            )
            if _try_compile(cc, probe, ["-pthread"], link=True):
                threads, thread_macros = ["-pthread"], [("NNF_HAVE_THREADS", "1")]
            else:
                print("nnfast: no POSIX threads or C11 atomics; building single-threaded kernels")
        # each ISA path's kernel files with -m<feature> per feature, into the core only; a path
        # that does not build here is compiled without them (empty tables) and left out
        isa_objs = []
        paths = [(ident, [pat.format(name) for pat in ISA_FILES], name, feats)
                 for ident, name, feats in ISAS if feats]  # fmt: skip
        paths += [(ident, [file], file, feats) for file, (ident, feats) in EXTRA_ISA_FILES.items()]
        for ident, files, name, feats in paths:
            files = [os.path.join(CSRC, f) for f in files]
            flags = [f"-m{f}" for f in feats]
            macros = [(f"NNF_HAVE_{ident}", "1")]
            objs = None
            if IS_X86_64 and unix:
                try:
                    objs = cc.compile(
                        files,
                        output_dir=self.build_temp,
                        macros=macros,
                        include_dirs=[CSRC],
                        extra_postargs=base + threads + flags,
                    )
                except Exception as err:  # an old compiler
                    print(f"nnfast: cannot build the {name} kernels ({err}); that path is left out")
            if objs is None:
                objs = cc.compile(
                    files, output_dir=self.build_temp, include_dirs=[CSRC], extra_postargs=base
                )
            isa_objs += objs
        for ext in self.extensions:
            if ext.name == CORE:
                ext.extra_objects = isa_objs + list(ext.extra_objects or [])
                ext.define_macros = list(ext.define_macros or []) + thread_macros
            ext.extra_compile_args = base + threads
            ext.extra_link_args = threads
        super().build_extensions()


def native_extension(name, pyx, c_sources):
    # the headers and templates (.inc) the sources include, and the ISA paths' kernel files
    # (linked in as extra objects): without them a change to one alone left `build_ext
    # --inplace` reporting the extension up to date, the old kernels still linked in
    included = [
        os.path.join(CSRC, f) for f in sorted(os.listdir(CSRC)) if f.endswith((".h", ".inc", ".c"))
    ]
    return Extension(
        name,
        sources=[pyx] + [os.path.join(CSRC, s) for s in c_sources],
        depends=included,
        include_dirs=[CSRC, numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
    )


def cythonize(extensions):
    from Cython.Build import cythonize as _cythonize

    return _cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "embedsignature": True,
        },
    )


extensions = [
    native_extension(CORE, "nnfast/_native/_core.pyx", CORE_SOURCES),
    native_extension("nnfast._native._blas", "nnfast/_native/_blas.pyx", []),
]

if "--help" not in sys.argv:
    extensions = cythonize(extensions)

setup(ext_modules=extensions, cmdclass={"build_ext": BuildExt})
