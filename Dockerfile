# One image for every service: web, worker, beat and mail (see docker-compose.yml).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 MAIL_VAR_DIR=/data
WORKDIR /app

COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
RUN SECRET_KEY=build-only python manage.py collectstatic --noinput -v 0 \
    && useradd --system --uid 1000 --home /data mail && mkdir -p /data && chown mail /data

USER mail
VOLUME ["/data"]
EXPOSE 8000 25 587 465 143 993 110 995
CMD ["gunicorn", "config.wsgi", "--bind", "0.0.0.0:8000", "--workers", "4"]
