"""What the suite stores, in one vocabulary: the lowest level of ``models``, importing nothing else of the suite.

- :mod:`models.stored.jsonio`: strict JSON (non-finite numbers as ``"nan"``, ``"inf"``, ``"-inf"``; numpy values as
  plain ones) and atomic writes (temporary file in the same directory, fsync, rename);
- :mod:`models.stored.verdicts`: :class:`~models.stored.verdicts.VerdictStatus`, the one verdict vocabulary (an outcome's, a
  claim's), each member carrying its sentence, and the one key it is stored under (``"verdict"``);
- :mod:`models.stored.evidence` and :mod:`models.stored.chain`: the margin, error and ratio a verdict rests on and its evidence
  chain, built by ``verify`` when a claim runs and read back from the stored JSON by ``reports``.

Every package may import it: the rest of ``models``, ``properties``, ``verify`` and ``reports`` (which imports nothing else of the suite).
"""
