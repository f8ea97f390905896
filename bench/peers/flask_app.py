"""A bare Flask app answering like the hello function, for granian's WSGI interface."""

from flask import Flask, request

app = Flask(__name__)


@app.route("/", methods=["GET", "POST"])
def hello():
    body = request.get_json(silent=True) or {}
    return {"message": f"Hello, {body.get('name', 'world')}!"}
