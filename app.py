"""paylambda: a BitPay-compatible payment API on AWS Lambda.

This module only wires the Chalice app; every route lives in a blueprint
under `chalicelib/`: the API in `chalicelib/api/routes.py`, the hosted pages in
`chalicelib/pages/routes.py`, and the scheduled payment watcher and the notification
queue's consumer in `chalicelib/jobs.py`.
"""

import logging

from chalice import Chalice

from chalicelib.api.request_log import middleware
from chalicelib.api.routes import api
from chalicelib.jobs import jobs
from chalicelib.pages.routes import pages
from chalicelib.settings import get_settings

app = Chalice(app_name="paylambda")
app.log.setLevel(logging.INFO)
app.register_blueprint(api)
app.register_blueprint(pages)
app.register_blueprint(jobs)
app.register_middleware(middleware, "http")
if get_settings().test_chain_controls:
    # `make run` on its local regtest chain only, never a deployed stack: the checkout's test buttons.
    from chalicelib.pages.test_chain import test_chain_pages

    app.register_blueprint(test_chain_pages)
