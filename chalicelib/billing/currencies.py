"""What GET /currencies says of each currency: names, symbols and decimals, in BitPay's shape.

Decimals are ISO 4217's minor units (0 for yen and won): an invoice's smallest amount
is one minor unit. The names here are also the names GET /rates gives.
"""

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Currency:
    name: str
    plural: str
    symbol: str
    decimals: int = 2


CURRENCIES: dict[str, Currency] = {
    "BTC": Currency("Bitcoin", "Bitcoin", "₿", 8),
    "AED": Currency("UAE Dirham", "UAE dirhams", "د.إ"),
    "ARS": Currency("Argentine Peso", "Argentine pesos", "$"),
    "AUD": Currency("Australian Dollar", "Australian dollars", "A$"),
    "BRL": Currency("Brazilian Real", "Brazilian reals", "R$"),
    "CAD": Currency("Canadian Dollar", "Canadian dollars", "C$"),
    "CHF": Currency("Swiss Franc", "Swiss francs", "CHF"),
    "CLP": Currency("Chilean Peso", "Chilean pesos", "$", 0),
    "CNY": Currency("Chinese Yuan", "Chinese yuan", "¥"),
    "COP": Currency("Colombian Peso", "Colombian pesos", "$"),
    "CZK": Currency("Czech Koruna", "Czech korunas", "Kč"),
    "DKK": Currency("Danish Krone", "Danish kroner", "kr"),
    "EUR": Currency("Euro", "Euros", "€"),
    "GBP": Currency("Pound Sterling", "Pounds sterling", "£"),
    "HKD": Currency("Hong Kong Dollar", "Hong Kong dollars", "HK$"),
    "HUF": Currency("Hungarian Forint", "Hungarian forints", "Ft"),
    "IDR": Currency("Indonesian Rupiah", "Indonesian rupiahs", "Rp"),
    "ILS": Currency("Israeli New Shekel", "Israeli new shekels", "₪"),
    "INR": Currency("Indian Rupee", "Indian rupees", "₹"),
    "JPY": Currency("Japanese Yen", "Japanese yen", "¥", 0),
    "KRW": Currency("South Korean Won", "South Korean won", "₩", 0),
    "MXN": Currency("Mexican Peso", "Mexican pesos", "$"),
    "MYR": Currency("Malaysian Ringgit", "Malaysian ringgits", "RM"),
    "NGN": Currency("Nigerian Naira", "Nigerian nairas", "₦"),
    "NOK": Currency("Norwegian Krone", "Norwegian kroner", "kr"),
    "NZD": Currency("New Zealand Dollar", "New Zealand dollars", "NZ$"),
    "PHP": Currency("Philippine Peso", "Philippine pesos", "₱"),
    "PLN": Currency("Polish Zloty", "Polish zlotys", "zł"),
    "RON": Currency("Romanian Leu", "Romanian lei", "lei"),
    "SEK": Currency("Swedish Krona", "Swedish kronor", "kr"),
    "SGD": Currency("Singapore Dollar", "Singapore dollars", "S$"),
    "THB": Currency("Thai Baht", "Thai baht", "฿"),
    "TRY": Currency("Turkish Lira", "Turkish lira", "₺"),
    "TWD": Currency("New Taiwan Dollar", "New Taiwan dollars", "NT$"),
    "UAH": Currency("Ukrainian Hryvnia", "Ukrainian hryvnias", "₴"),
    "USD": Currency("US Dollar", "US dollars", "$"),
    "ZAR": Currency("South African Rand", "South African rand", "R"),
}


def bitpay_view(code: str) -> dict:
    """One item of BitPay's GET /currencies, typed as bitpay 8's Currency model wants it."""
    currency = CURRENCIES.get(code, Currency(code, code, code))
    view = {
        "code": code,
        "symbol": currency.symbol,
        "precision": currency.decimals,
        "name": currency.name,
        "plural": currency.plural,
        "alts": code.lower(),
        "minimum": 10.0**-currency.decimals,
        "sanctioned": False,
        "decimals": currency.decimals,
        # Read unconditionally by the PHP client the legacy BTCPay plugins ship (its setPayoutFields takes
        # an array, so a missing key is a fatal error); paylambda makes no payouts.
        "exchangePctFee": 100,
        "payoutEnabled": False,
        "payoutFields": [],
    }
    if code == "BTC":
        view["chain"] = "BTC"
    return view


def format_amount(amount: object, code: str) -> str:
    """An amount as people read it, with its code: to the currency's decimals (more when the amount has
    more, so nothing is hidden) with thousands separators: 150,000 JPY, 1,234.50 USD, 0.00019231 BTC."""
    value = Decimal(str(amount))
    decimals = CURRENCIES[code].decimals if code in CURRENCIES else 2
    places = max(decimals, -value.normalize().as_tuple().exponent)
    return f"{value:,.{places}f} {code}"
