"""`python -m tb_attention` is the `tb-attention` command."""
import sys

from tb_attention.cli import main

if __name__ == "__main__":
    sys.exit(main())
