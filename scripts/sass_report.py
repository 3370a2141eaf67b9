"""The SASS of a kernel file as the cuda backend builds it, counted: a measure for sessions
without a GPU.

    python scripts/sass_report.py kernels/isp.cu isp_main isp_main_dir --segments 6

For each kernel: registers, spills, static SASS instructions, the commonest opcodes, and the
instructions between consecutive barriers (`BAR.SYNC`), which for a staged kernel are its
stages in order (a kernel with several template bodies repeats the pattern per body); with
--loads, how many global loads go out before the first use of their data, batch by batch;
with --dump DIR, each kernel's instructions in DIR/<kernel>.sass, one a line; with
--common-path, what a whole interior tile runs, alone (see COMMON_PATH).

Static counts are not run time: an instruction in a loop or in every warp counts once, an
edge path as much as the hot one. Compare two builds of the same kernel, and weight the parts
by how often they run (an Nsight Compute source profile from a GPU session says that). The
cubin comes from NVRTC with the cuda backend's options (compile_report.compile_cubin); the
disassembler is `cuobjdump` (with the `nvdisasm` it runs) from a CUDA toolkit or NVIDIA's
wheels `nvidia-cuda-cuobjdump` and `nvidia-cuda-nvdisasm` (the dev extra installs them).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gputrack.commands.args import (  # noqa: E402
    ScriptParser,
    input_file,
    macro_define,
    output_folder,
    positive_int,
)
from gputrack.device.compile_report import DEFAULT_ARCH, check_arch, compile_cubin  # noqa: E402
from gputrack.errors import GputrackError  # noqa: E402

# --common-path: the conditions that pick an edge path, made constant in a temporary copy of
# the file, so that the compiler drops the edge paths and a barrier segment counts what a whole
# interior tile runs (width a multiple of 16, no lens shading; RGB8 + NV12 as both are in the
# code). Such a build is wrong at frame edges: for counting only. A condition no longer found in
# the file is an error, not a silent miscount.
COMMON_PATH = {
    "isp.cu": [
        ("const bool fast = (w & 15) == 0 && x0 + TILE_W <= w;", "const bool fast = true;"),
        ("if (vec_rows && gx >= 0 && gx + 7 < w)", "if (true)"),
        ("if (shade[3] == 0.0f)", "if (true)"),
        ("if (X < w && Y < h)", "if (true)"),
        ("const int rows = gt_imin(TH, h - y0);", "const int rows = TH;"),
    ],
}


def common_path_source(path: Path) -> str:
    """The file's source with its COMMON_PATH conditions made constant."""
    rules = COMMON_PATH.get(path.name)
    if rules is None:
        raise ValueError(f"--common-path: no edge conditions known for {path.name}")
    text = path.read_text()
    for condition, constant in rules:
        if condition not in text:
            raise ValueError(f"--common-path: '{condition}' is no longer in {path.name}")
        text = text.replace(condition, constant)
    return text


_FUNCTION = re.compile(r"^\s*Function\s*:\s*(\S+)")
_INSTRUCTION = re.compile(r"^\s*/\*[0-9a-f]{4,}\*/\s+(.*?)\s*;")


def find_tool(name: str) -> str | None:
    """A CUDA binary tool on the PATH, or the one of NVIDIA's PyPI wheel (nvidia/<cu>/bin)."""
    found = shutil.which(name)
    if found:
        return found
    for entry in sys.path:
        for candidate in sorted(Path(entry).glob(f"nvidia/*/bin/{name}")):
            if candidate.is_file():
                return str(candidate)
    return None


def find_cuobjdump() -> str | None:
    """cuobjdump, where nvdisasm (which it runs for -sass) is found too."""
    return find_tool("cuobjdump") if find_tool("nvdisasm") else None


def parse_sass(text: str) -> dict[str, list[str]]:
    """`cuobjdump -sass` output -> {kernel: [instruction text, ...]} in address order."""
    functions: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        head = _FUNCTION.match(line)
        if head:
            current = functions.setdefault(head.group(1), [])
            continue
        inst = _INSTRUCTION.match(line)
        if inst and current is not None:
            current.append(inst.group(1))
    return functions


def opcode(instruction: str) -> str:
    """'@!P0 FFMA.SAT R1, R2, R3, R4' -> 'FFMA' (predicate and modifiers dropped)."""
    words = instruction.split()
    if words and words[0].startswith("@"):
        words = words[1:]
    return words[0].split(".")[0] if words else ""


def barrier_segments(instructions: list[str]) -> list[int]:
    """Instructions before the first barrier, between consecutive ones, and after the last."""
    sizes, count = [], 0
    for inst in instructions:
        if opcode(inst) == "BAR":
            sizes.append(count)
            count = 0
        count += 1
    sizes.append(count)
    return sizes


_REG = re.compile(r"\bR(\d+)(\.64)?\b")
_STORES = ("STG", "STS", "ST", "STL", "RED", "ATOM", "ATOMS", "ATOMG")


def _registers(operands: str) -> set[int]:
    """Register numbers an operand list names ('R12.64' is the pair R12, R13)."""
    regs: set[int] = set()
    for m in _REG.finditer(operands):
        r = int(m.group(1))
        regs.update((r, r + 1) if m.group(2) else (r,))
    return regs


def load_batches(instructions: list[str]) -> list[int]:
    """Global loads (LDG) in straight-line order, grouped into batches: a batch ends at the
    first instruction that reads what one of its loads wrote (or at a barrier). A warp issues
    in order, so that instruction waits for memory, and the loads after it are a further round
    trip. Branches are ignored: the listing's order stands in for the path actually taken, so
    this is a hint, to be read beside the source (`isp_awb_stats`' "8 loads, then use" came
    out as 4, 2 and 2)."""
    batches: list[int] = []
    pending: set[int] = set()
    count = 0
    for inst in instructions:
        op = opcode(inst)
        words = inst.split(None, 2 if inst.startswith("@") else 1)
        operands = words[-1] if len(words) > (2 if inst.startswith("@") else 1) else ""
        if op == "BAR" or (
            pending
            and _registers(operands if op in _STORES else operands.partition(",")[2]) & pending
        ):
            if count:
                batches.append(count)
            pending, count = set(), 0
        if op == "LDG":
            head = words[-2] if inst.startswith("@") else words[0]
            width = 4 if ".128" in head else 2 if ".64" in head else 1
            first = _REG.search(operands)
            if first:
                r = int(first.group(1))
                pending.update(range(r, r + width))
            count += 1
    if count:
        batches.append(count)
    return batches


def disassemble(cubin: bytes, cuobjdump: str) -> dict[str, list[str]]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "k.cubin")
        path.write_bytes(cubin)
        nvdisasm = find_tool("nvdisasm")
        env = dict(os.environ)
        if nvdisasm:  # cuobjdump looks for it on the PATH
            env["PATH"] = f"{Path(nvdisasm).parent}{os.pathsep}{env.get('PATH', '')}"
        done = subprocess.run(
            [cuobjdump, "-sass", str(path)], capture_output=True, text=True, timeout=300, env=env
        )
    if done.returncode != 0:
        raise RuntimeError(f"cuobjdump failed: {done.stderr.strip()[:300]}")
    return parse_sass(done.stdout)


def gpu_arch(text: str) -> str:
    """--arch: a real architecture NVRTC builds for (sm_90, sm_90a): a virtual one (compute_90)
    gives PTX, which has no SASS to count."""
    try:
        check_arch(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if not text.startswith("sm_"):
        raise argparse.ArgumentTypeError(f"'{text}': give a real architecture (sm_XX), whose "
                                         "cubin has SASS")  # fmt: skip
    return text


def main(argv: list[str] | None = None) -> int:
    ap = ScriptParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", type=input_file, help="a kernel file, e.g. kernels/isp.cu")
    ap.add_argument("kernels", nargs="*", help="kernels to report (default: every one)")
    ap.add_argument("--arch", type=gpu_arch, default=DEFAULT_ARCH)
    ap.add_argument("-D", dest="defines", type=macro_define, action="append", default=[],
                    metavar="NAME[=VALUE]", help="a macro for the build (NAME alone: 1)")
    ap.add_argument("--segments", type=positive_int, default=8, help="barrier segments to print")
    ap.add_argument("--top", type=positive_int, default=8, help="commonest opcodes to print")
    ap.add_argument("--loads", action="store_true",
                    help="global loads issued before the first use of their data, per batch "
                    "(straight-line order: a hint)")  # fmt: skip
    ap.add_argument("--dump", type=output_folder, metavar="DIR",
                    help="also write each kernel's SASS to DIR/<kernel>.sass, one instruction "
                    "a line (to diff two builds or read a hot loop)")  # fmt: skip
    ap.add_argument("--common-path", action="store_true",
                    help="count the common path only: a copy with the edge-path conditions "
                    "made constant (COMMON_PATH), wrong at frame edges")  # fmt: skip
    args = ap.parse_args(argv)
    if args.common_path and args.file.name not in COMMON_PATH:  # before looking for tools
        ap.error(f"--common-path: no edge conditions known for {args.file.name} (only "
                 f"{', '.join(COMMON_PATH)})")  # fmt: skip
    try:
        return run(args)
    except (GputrackError, RuntimeError, OSError) as err:  # one line, not a traceback
        print(f"sass_report: error: {err}", file=sys.stderr)
        return getattr(err, "exit_code", 1)


def run(args: argparse.Namespace) -> int:
    cuobjdump = find_cuobjdump()
    if cuobjdump is None:
        print(
            "cuobjdump and nvdisasm not found: pip install nvidia-cuda-cuobjdump "
            "nvidia-cuda-nvdisasm (the dev extra has them)",
            file=sys.stderr,
        )
        return 2
    defines = dict(args.defines)
    with tempfile.TemporaryDirectory() as tmp:
        source = args.file
        if args.common_path:
            try:
                text = common_path_source(args.file)
            except ValueError as err:
                print(err, file=sys.stderr)
                return 1
            source = Path(tmp, args.file.name)  # common.cuh still comes from kernels/
            source.write_text(text)
        report, cubin = compile_cubin(source, args.arch, defines)
    if cubin is None:
        print(f"{args.file}: {report.error or 'did not compile'}", file=sys.stderr)
        return 1
    sass = disassemble(cubin, cuobjdump)
    resources = {k.name: k for k in report.kernels}
    names = args.kernels or sorted(sass)
    missing = [n for n in names if n not in sass]
    if missing:
        print(f"not in {args.file.name}: {', '.join(missing)}", file=sys.stderr)
        return 1
    what = "its common path only" if args.common_path else "as the cuda backend builds it"
    print(f"{args.file.name} for {args.arch} ({report.compiler}, {what})")
    for name in names:
        instructions = sass[name]
        res = resources.get(name)
        regs = f"{res.registers} regs, {res.spills} B spills" if res else "resources unknown"
        print(f"\n{name}: {len(instructions)} SASS instructions, {regs}")
        counts = collections.Counter(opcode(i) for i in instructions)
        top = ", ".join(f"{op} {n}" for op, n in counts.most_common(args.top))
        print(f"  opcodes: {top}")
        segments = barrier_segments(instructions)
        shown = " | ".join(str(n) for n in segments[: args.segments])
        more = f" | ... ({len(segments)} in all)" if len(segments) > args.segments else ""
        print(f"  between barriers: {shown}{more}")
        if args.loads:
            print(f"  global load batches: {', '.join(map(str, load_batches(instructions)))}")
        if args.dump:
            args.dump.mkdir(parents=True, exist_ok=True)
            listing = args.dump / f"{name}.sass"
            listing.write_text("\n".join(instructions) + "\n")
            print(f"  listing: {listing}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
