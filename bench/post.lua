-- The one request every server gets: POST / with a small JSON body.
wrk.method = "POST"
wrk.path = "/"
wrk.body = '{"name":"bench"}'
wrk.headers["Content-Type"] = "application/json"
