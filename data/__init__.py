"""The bundled topic vocabulary and seed studies, installed as the package `studybot_data`."""
