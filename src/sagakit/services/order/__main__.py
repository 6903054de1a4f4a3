from sagakit.services.host import serve
from sagakit.services.order import SPEC

serve(SPEC)
