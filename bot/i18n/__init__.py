"""What members read, in their Discord client's language: de, es (es-ES, es-419), fr, ja and pt-BR besides English."""
