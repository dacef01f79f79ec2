"""The API's routes, one ``APIRouter`` module per resource; :func:`ops.hooks.api.create_app` includes them."""
