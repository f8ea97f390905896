"""pubsub-consumer: orders in, a running total kept in state, enriched orders out."""

import functions_framework as ff


def handler(context, event):
    order = event.data
    if not isinstance(order, dict) or "amount" not in order:
        raise ff.Drop(f"not an order: {order!r}")
    totals = context.state("totals")
    customer = str(order.get("customer", "anonymous"))
    total = totals.get(customer, 0) + order["amount"]
    totals.save(customer, total)
    context.send({**order, "customer_total": total}, output="processed")
    context.logger.info("order %s from %s: total %s", event.id, customer, total)
