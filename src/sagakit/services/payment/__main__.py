from sagakit.services.host import serve
from sagakit.services.payment import SPEC

serve(SPEC)
