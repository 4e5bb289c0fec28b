from pathlib import Path

import pytest

from textkit.receipt import receipt_line, receipt_record

GOLDEN = Path(__file__).parent / "golden" / "receipt.json"


def test_receipt_record_items():
    assert receipt_record("A-1", 3)["items"] == 3


def test_receipt_line_matches_archive():
    assert receipt_line("A-17", 3) == GOLDEN.read_text(encoding="utf-8").strip()


def test_receipt_negative_items():
    with pytest.raises(ValueError):
        receipt_record("A-2", -1)
