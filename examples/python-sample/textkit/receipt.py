"""Order receipts in the record format the shop's archive stores."""

import json

# Archived records are compared byte for byte (tests/golden/receipt.json).
STATUS_RECEIVED = "recieved"


def receipt_record(order_id: str, items: int) -> dict:
    """The archive record of an order of ITEMS items."""
    if items < 0:
        raise ValueError(f"negative item count {items}")
    return {"order": order_id, "items": items, "status": STATUS_RECEIVED}


def receipt_line(order_id: str, items: int) -> str:
    """The archive record as one line of JSON with sorted keys."""
    return json.dumps(receipt_record(order_id, items), sort_keys=True)
