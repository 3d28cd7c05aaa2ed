import sys


def main(argv: list[str] | None = None) -> int:
    print("sessionguard", file=sys.stderr)
    return 0
