"""The rebuild's second process (``python -m hero.readmodels._fold_away``): its task comes
pickled on stdin, its fold of the parts :data:`hero.readmodels._rebuild.AWAY` goes back
pickled on stdout (see :func:`hero.readmodels._rebuild.fold_log`). A module of its own, run
by name: a multiprocessing child would import the parent's main module first, and the
``hero`` CLI's imports everything (seconds)."""

from __future__ import annotations

import pickle
import sys

from hero.readmodels._rebuild import fold_away


def main() -> None:
    url, names, wanted, source, through, batch = pickle.load(sys.stdin.buffer)
    folded = fold_away(url, names, wanted, source, through, batch)
    sys.stdout.buffer.write(pickle.dumps(folded, protocol=pickle.HIGHEST_PROTOCOL))
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
