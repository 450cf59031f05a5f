import sys

from infer_operator.cli import main

if __name__ == "__main__":
    args = sys.argv[1:] or ["run"]
    sys.exit(main(args))
