"""The errors of publishing to the Hub."""

class HubPublishError(RuntimeError):
    """The checkpoint cannot be published as it is (missing file, bad card input, failed validation)."""


class MissingTokenError(HubPublishError):
    """No Hugging Face token was found in the environment or the cached login."""
