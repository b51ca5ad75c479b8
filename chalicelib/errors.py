"""The few ways a request can fail, each with its HTTP status.

Domain code raises these; `chalicelib.api` turns them into `{"error": ...}`
responses in one place, so no route handler builds an error body itself.
"""


class ApiError(Exception):
    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class ServiceUnavailable(ApiError):
    status = 503


class TooManyRequests(ApiError):
    status = 429
