"""Claims explain themselves without files a user lacks: the catalog ships in the package, ``verify show`` prints
the sections a claim cites, ``docs/claims.md`` is generated from it, and nothing points to ``../shared/``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def builtin_claims():
    from verify import discovery
    return discovery.load(()).claims  # the built-in claims only (other tests register toy claims too)


def test_every_builtin_claim_cites_catalog_sections_that_ship():
    from properties import catalog

    claims = builtin_claims()
    assert catalog.section("RC20-Thm1").startswith("### RC20-Thm1:")
    assert "(1 - s)^2 / s" in catalog.section("RC20-Thm1")  # the explicit constant and its derivation
    for c in claims.values():
        text = " ".join((c.source, c.statement, c.how))
        assert not catalog.unresolved(text), (c.id, catalog.unresolved(text))
        assert catalog.for_claim(c, claims), f"{c.id} cites no catalog section"


def test_catalog_references_in_the_package_resolve_and_nothing_points_to_shared():
    from properties import catalog

    files = [p for pkg in ("models", "properties", "verify", "reports") for p in (ROOT / pkg).rglob("*.py")]
    files += [ROOT / "README.md", ROOT / "pyproject.toml"]
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert "../shared" not in text and "/work/shared" not in text, path
        for m in re.finditer(r"catalog\s+((?:RC20|ACHL19|ACH18|ACGH19|RMC21|Gunasekar17)-[A-Za-z0-9-]+)", text):
            assert catalog.refs(m.group(1)), (path, m.group(1))


def test_show_prints_the_catalog_notes_of_a_claim(cli, tmp_path):
    code, out, err = cli("show", "rc20.neg.det_negative", "--out", tmp_path)
    assert code == 0, err
    assert "catalog notes (RC20-Thm1;" in out  # inherited from its parent
    assert "  | **Explicit version (my derivation" in out and "Therefore **`|w11(t)| >= (1 - s)^2 / s`**" in out
    assert "det W(0) of either sign" in out  # the control's statement no longer assumes det > 0
    code, out, err = cli("show", "rc20.neg.det_negative", "--out", tmp_path, "--no-notes")
    assert "catalog notes: RC20-Thm1 (shown without --no-notes" in out and "  | " not in out


def test_docs_claims_md_is_the_generated_file(cli):
    code, out, err = cli("list", "--markdown")
    assert code == 0, err
    committed = (ROOT / "docs" / "claims.md").read_text(encoding="utf-8")
    assert out == committed, "docs/claims.md is stale: run verify list --markdown > docs/claims.md"
    for cid in builtin_claims():
        assert f"## `{cid}`" in committed
    assert '<a id="catalog-rc20-thm1"></a>' in committed and "(#catalog-rc20-thm1)" in committed


@pytest.mark.parametrize("section", ["RC20-Conj-refuted", "RC20-Prop-RankSubopt", "section 7"])
def test_sections_without_a_colon_or_numbered_parse(section):
    from properties import catalog

    assert len(catalog.section(section)) > 200
