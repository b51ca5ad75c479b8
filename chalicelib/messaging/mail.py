"""Sending one email: through Amazon SES on AWS, through an SMTP server locally (`make run`'s sink).

Only the notification consumer sends mail: an email is a notification like an IPN,
written with the invoice change in the same transaction and retried on the same
schedule, so a merchant's "paid" email survives a crash or an SES outage as an IPN does.
"""

from functools import lru_cache

from chalicelib.settings import get_settings

SMTP_TIMEOUT_SECONDS = 10


def enabled() -> bool:
    return get_settings().email_sender is not None


def send(recipients: list[str], subject: str, text: str) -> str | None:
    """Send a plain-text email; None when the server took it, else what went wrong."""
    settings = get_settings()
    if settings.smtp_host:
        return _send_smtp(settings.smtp_host, settings.smtp_port, settings.email_sender, recipients, subject, text)
    return _send_ses(settings.email_sender, recipients, subject, text)


def _send_smtp(host: str, port: int, sender: str, recipients: list[str], subject: str, text: str) -> str | None:
    # Imported here: on AWS mail goes through SES, and the consumer's cold start need not load these.
    import smtplib
    from email.message import EmailMessage

    message = EmailMessage()
    try:
        # Header values with line breaks (a notificationEmail that tries header injection) raise ValueError.
        message["From"], message["To"], message["Subject"] = sender, ", ".join(recipients), subject
        message.set_content(text)
        with smtplib.SMTP(host, port, timeout=SMTP_TIMEOUT_SECONDS) as server:
            server.send_message(message)
    except (OSError, ValueError, smtplib.SMTPException) as exc:
        return f"{type(exc).__name__}: {exc}"[:300]
    return None


@lru_cache(maxsize=1)
def _ses():
    import boto3  # only the consumer sends mail

    # boto3 itself reads AWS_ENDPOINT_URL_SESV2, which points the tests at moto.
    return boto3.client("sesv2", region_name=get_settings().region)


def _send_ses(sender: str, recipients: list[str], subject: str, text: str) -> str | None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        _ses().send_email(
            FromEmailAddress=sender,
            Destination={"ToAddresses": recipients},
            Content={"Simple": {"Subject": {"Data": subject}, "Body": {"Text": {"Data": text}}}},
        )
    except (BotoCoreError, ClientError) as exc:
        return f"SES: {exc}"[:300]
    return None
