"""paylambda: a BitPay-compatible payment API on AWS Lambda.

This module only wires the Chalice app; every route lives in a blueprint
under `chalicelib/`: the API in `chalicelib/api.py`, the hosted pages in
`chalicelib/pages.py`, and the scheduled payment watcher and the notification
queue's consumer in `chalicelib/jobs.py`.
"""

import logging

from chalice import Chalice

from chalicelib.api import api
from chalicelib.jobs import jobs
from chalicelib.pages import pages
from chalicelib.request_log import middleware

app = Chalice(app_name="paylambda")
app.log.setLevel(logging.INFO)
app.register_blueprint(api)
app.register_blueprint(pages)
app.register_blueprint(jobs)
app.register_middleware(middleware, "http")
