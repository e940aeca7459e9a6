"""Register spills in SASS (``cuobjdump -sass`` output) that sit inside a loop, for tools/kernel_registers.py."""
import re


def spills_in_loops(sass: str) -> int:
    """Local-memory loads and stores (STL / LDL: register spills) between a backward branch and its target, i.e.
    executed on every iteration of some loop; those before or after all loops run once per program."""
    code = [(int(addr, 16), text) for addr, text in re.findall(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);", sass)]
    loops = [(int(target, 16), addr) for addr, text in code
             for target in re.findall(r"\bBRA\s+(0x[0-9a-f]+)", text) if int(target, 16) < addr]
    return sum(1 for addr, text in code if re.search(r"\b(STL|LDL)\b", text)
               and any(lo <= addr <= hi for lo, hi in loops))
