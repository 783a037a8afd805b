"""The admin panel at /admin/: static pages served from the package, a signed session cookie,
and the JSON endpoints the pages read (which scripts may call with the admin key as Bearer)."""
