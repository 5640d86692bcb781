"""``python -m benchmarks ...``: the same CLI as the ``hetbench`` console script."""
import os
import sys

from benchmarks.cli.main import main
from benchmarks.cli.allocator import ensure_fast_allocator

if __name__ == "__main__":
    if os.environ.get("HETBENCH_ALLOCATOR", "fast") == "fast":
        ensure_fast_allocator()
    sys.exit(main())
