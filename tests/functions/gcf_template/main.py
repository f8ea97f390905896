"""A Google-style HTTP function rendering a Flask template from templates/ beside this file."""

from flask import render_template

import functions_framework


@functions_framework.http
def greet(request):
    return render_template("greeting.html", name=request.args.get("name", "World"))
