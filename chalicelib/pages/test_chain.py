"""The checkout's test-chain buttons (`make run` on its local regtest chain only; app.py registers this then).

The form posts here and comes back to the checkout (post/redirect/get); with its script the
page stays open and asks for its status at once.
"""

from chalice import Blueprint, Response

from chalicelib.billing import invoices
from chalicelib.pages.rendering import Visit
from chalicelib.payments import test_chain
from chalicelib.web import API_CONTENT_TYPES, ApiRequest

test_chain_pages = Blueprint(__name__)


@test_chain_pages.route("/invoice/test-chain", methods=["POST"], content_types=API_CONTENT_TYPES)
def control() -> Response:
    visit = Visit(ApiRequest.from_chalice(test_chain_pages.current_request))

    def view() -> Response:
        invoice = invoices.get_public(visit.request.form.get("id") or "")
        test_chain.run(invoice, visit.request.form.get("control") or "")
        return visit.redirect("/invoice", id=invoice.invoice_id)

    # The checkout's form carries the session's CSRF token when a merchant is signed in, else the
    # sign-in form's (Visit.csrf_token), and is checked against the same one.
    return visit.respond(view, signed_in=visit.session is not None)
