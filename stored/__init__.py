"""What the suite stores, in one vocabulary: the lowest-level package, importing nothing else of the suite.

- :mod:`stored.jsonio`: strict JSON (non-finite numbers as ``"nan"``, ``"inf"``, ``"-inf"``; numpy values as
  plain ones) and atomic writes (temporary file in the same directory, fsync, rename);
- :mod:`stored.verdicts`: :class:`~stored.verdicts.VerdictStatus`, the one verdict vocabulary (an outcome's, a
  claim's), each member carrying its sentence, and the one key it is stored under (``"verdict"``);
- :mod:`stored.evidence` and :mod:`stored.chain`: the margin, error and ratio a verdict rests on and its evidence
  chain, built by ``verify`` when a claim runs and read back from the stored JSON by ``reports``.

Every other package may import it: ``models``, ``properties``, ``verify`` and ``reports``.
"""
