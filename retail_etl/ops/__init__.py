"""Operations: backups (pgBackRest, pg_dump), restore drills, their manifests."""
