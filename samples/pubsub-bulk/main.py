"""pubsub-bulk: orders arrive in bulks; one call per bulk, one state write per customer per bulk."""

import functions_framework as ff


@ff.batch
def handler(context, events):
    """``events`` is the whole bulk. The result says what to ack for each event: here a dict of
    event id to outcome, the events not listed succeed."""
    outcomes = {}
    amounts = {}
    for event in events:
        order = event.data
        if not isinstance(order, dict) or not isinstance(order.get("amount"), (int, float)):
            outcomes[event.id] = ff.Drop(f"not an order: {order!r}")  # this event only
            continue
        customer = str(order.get("customer", "anonymous"))
        amounts[customer] = amounts.get(customer, 0) + order["amount"]
    totals = context.state("totals")
    for customer, amount in amounts.items():
        totals.save(customer, totals.get(customer, 0) + amount)  # raising here retries the whole bulk
    context.logger.info("a bulk of %d order(s), %d dropped: %s", len(events), len(outcomes), amounts)
    return outcomes
