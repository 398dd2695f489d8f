"""`python -m fastrnn.train`: the example models' command line (fastrnn.examples.cli)."""
from .examples.cli import main

if __name__ == "__main__":
    main()
