"""The checkout's language: the buyer's browser's first one paylambda speaks, else the store's default.

Catalogs are gettext's: `locale/<language>/LC_MESSAGES/messages.po`, compiled to the `.mo`
files beside them (committed, so the Lambda bundle carries them). Babel extracts and compiles
them (a dev tool, see README); at run time only the standard library's `gettext` reads them.
"""

import functools
import gettext
from pathlib import Path

from chalicelib.billing.stores import CHECKOUT_LANGUAGES, DEFAULT_LANGUAGE

LOCALE_DIR = Path(__file__).parent / "locale"
# A header longer than any browser sends is read only this far.
_MOST_RANGES = 20


def _ranges(header: str) -> list[str]:
    """The header's language ranges, most wanted first (q=0 ones dropped)."""
    weighted = []
    for position, item in enumerate(header.split(",")[:_MOST_RANGES]):
        tag, _, parameters = item.strip().partition(";")
        quality = 1.0
        name, _, value = parameters.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                quality = float(value)
            except ValueError:
                continue
        if quality > 0 and tag:
            weighted.append((-quality, position, tag.strip().lower()))
    return [tag for _, _, tag in sorted(weighted)]


def choose(accept_language: str | None, store_default: str | None) -> str:
    """The first language of Accept-Language that has a catalog ("de-CH" reads as "de"), else the store's."""
    for tag in _ranges(accept_language or ""):
        primary = tag.split("-")[0]
        if primary in CHECKOUT_LANGUAGES:
            return primary
    return store_default if store_default in CHECKOUT_LANGUAGES else DEFAULT_LANGUAGE


@functools.cache
def _translations(language: str) -> gettext.NullTranslations:
    # English is the templates' own text: no catalog, the messages as written.
    return gettext.translation("messages", LOCALE_DIR, languages=[language], fallback=True)


def template_context(language: str) -> dict:
    """What a translated template renders with: Jinja2's i18n extension calls these."""
    translations = _translations(language if language in CHECKOUT_LANGUAGES else DEFAULT_LANGUAGE)
    return {
        "language": language,
        "_": translations.gettext,
        "gettext": translations.gettext,
        "ngettext": translations.ngettext,
    }
