"""Error handlers registered the way Google's functions-framework documents it."""

import flask

import functions_framework


class Overdrawn(Exception):
    pass


BALANCES = {"alice": 10}


@functions_framework.errorhandler(Overdrawn)
def on_overdrawn(error):
    return f"overdrawn by {error.args[0]}", 402


@functions_framework.errorhandler(404)
def on_not_found(error):
    return {"error": "no such account"}, 404


@functions_framework.http
def withdraw(request):
    account = request.args.get("account", "")
    if account not in BALANCES:
        flask.abort(404)
    amount = int(request.args.get("amount", "0"))
    if amount > BALANCES[account]:
        raise Overdrawn(amount - BALANCES[account])
    return f"withdrew {amount}"
