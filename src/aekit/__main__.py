"""``python -m aekit ...`` (what torchrun launches: ``torchrun --nproc-per-node 2 -m aekit train``)."""

from .cli import main

if __name__ == "__main__":
    main()
