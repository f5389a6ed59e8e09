"""The HTTP service (``custseq serve``): FastAPI routes in front of a saved model, behind the ``[service]`` extra.

Build it with :func:`create_app`; settings come from :class:`custseq.config.service.ServiceSettings`.
"""

from custseq.service.app import app_from_environment, create_app

__all__ = ["app_from_environment", "create_app"]
