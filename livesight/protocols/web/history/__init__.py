"""The HTTP routes over the past (the web folder holds 12 modules already):

- timeline_routes.py  the searchable timeline: /api/scenes, /api/cameras/<id>/scenes, keyframes
- timeline_params.py  their query parameters, parsed (pure)
- summary_routes.py   /api/cameras/<id>/summary: a period summarised, as Server-Sent Events or JSON
- times.py            `from`/`to` (ISO-8601 with a zone, or epoch seconds), shared by both
"""
