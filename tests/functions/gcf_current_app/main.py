"""Uses flask.current_app while the module is imported, as Google's functions-framework allows."""

import flask
from flask import current_app

import functions_framework

current_app.config["GREETING"] = "Bonjour"
APP_AT_IMPORT = current_app.name


@functions_framework.http
def greet(request):
    app = flask.current_app
    return {"greeting": app.config["GREETING"], "same_app": app.name == APP_AT_IMPORT}
