"""Typed functions written for Google's functions-framework: ``@typed(Type)`` and ``@typed`` with an
annotation. The input class turns the JSON body into an object (``from_dict``); an object returned is
sent as JSON (``to_dict``), a built-in value as it is."""

import functions_framework

PRICES = {"tea": 3, "cake": 5}


class Order:
    def __init__(self, item: str, quantity: int) -> None:
        self.item = item
        self.quantity = quantity

    @staticmethod
    def from_dict(obj: dict) -> "Order":
        item, quantity = obj["item"], obj["quantity"]
        if item not in PRICES:
            raise ValueError(f"unknown item {item!r}")
        if not isinstance(quantity, int) or quantity < 1:
            raise ValueError(f"quantity must be a positive whole number, got {quantity!r}")
        return Order(item, quantity)


class Receipt:
    def __init__(self, item: str, quantity: int, total: int) -> None:
        self.item = item
        self.quantity = quantity
        self.total = total

    def to_dict(self) -> dict:
        return {"item": self.item, "quantity": self.quantity, "total": self.total}


@functions_framework.typed(Order)
def price_explicit(order):
    return Receipt(order.item, order.quantity, order.quantity * PRICES[order.item])


@functions_framework.typed
def price_inferred(order: Order) -> Receipt:
    return Receipt(order.item, order.quantity, order.quantity * PRICES[order.item])


@functions_framework.typed
def describe(order: Order) -> str:
    return f"{order.quantity} x {order.item}"


@functions_framework.typed
def accept(order: Order) -> None:
    if order.quantity > 100:
        raise RuntimeError("too many")
