"""What every benchmark records about its run: the commit, git_dirty, and the CPU with its SIMD flags."""

from __future__ import annotations

import re
from pathlib import Path

from vplink.core.provenance import CPUINFO, SIMD_FLAGS, code_changes, cpu_info, provenance

# The first lines of /proc/cpuinfo on an AVX2-only AMD EPYC (the other CPU family the suite must pass on).
EPYC = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7763 64-Core Processor
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr sse sse2 ht syscall nx mmxext pni pclmulqdq ssse3 fma \
cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm abm sse4a fsgsbase bmi1 avx2 smep bmi2 \
erms rdseed adx smap clflushopt clwb sha_ni xsaveopt xsavec vaes vpclmulqdq rdpid fsrm

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7763 64-Core Processor
flags\t\t: fpu avx512f
"""


def test_an_avx2_only_epyc_is_told_apart(tmp_path: Path) -> None:
    (tmp_path / "cpuinfo").write_text(EPYC)
    cpu = cpu_info(tmp_path / "cpuinfo")
    assert cpu["model"] == "AMD EPYC 7763 64-Core Processor"
    # Only the first processor's block is read (the second one's avx512f is not this machine's).
    assert cpu["simd"] == {flag: flag in ("avx2", "fma") for flag in SIMD_FLAGS}


def test_without_proc_cpuinfo_the_flags_are_unknown_not_false(tmp_path: Path) -> None:
    cpu = cpu_info(tmp_path / "missing")
    assert cpu["model"] and set(cpu["simd"]) == set(SIMD_FLAGS) and all(v is None for v in cpu["simd"].values())


def test_this_machine_is_recorded_with_its_commit() -> None:
    recorded = provenance()
    assert re.fullmatch(r"[0-9a-f]{40}", recorded["git_commit"]) and isinstance(recorded["git_dirty"], bool)
    if CPUINFO.is_file():
        flags = next(line for line in CPUINFO.read_text().splitlines() if line.startswith("flags")).split()
        assert recorded["cpu"]["simd"] == {flag: flag in flags for flag in SIMD_FLAGS}
        assert recorded["cpu"]["model"] in CPUINFO.read_text()


def test_a_run_rewriting_its_outputs_does_not_dirty_the_tree() -> None:
    status = "\n".join([" M results/nil/dev/metrics.json", "?? results/nil/new/report.md",
                         " M benchmarks/results/speed.json", " M agent/nodes.py", "?? eval/new_module.py"])
    assert code_changes(status) == [" M agent/nodes.py", "?? eval/new_module.py"]
    assert code_changes("") == [] and code_changes(None) == []
    assert code_changes("M results/nil/dev/metrics.json") == []  # a first line whose leading blank was stripped
