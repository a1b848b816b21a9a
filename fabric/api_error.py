"""The one error the async client raises for a refused call (fabric.client re-exports it)."""


class ApiError(Exception):
    def __init__(self, status: int, message: str, request_id: str | None) -> None:
        super().__init__(f"HTTP {status}: {message} (request {request_id})")
        self.status, self.message, self.request_id = status, message, request_id
