"""`make run`: a local DynamoDB (moto's server, in memory), the tables, an admin account, and `chalice local`.

Ctrl-C stops all of it. Local data lives in memory only and is gone when it
stops; durable storage is DynamoDB on AWS.
"""

import logging
import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
API_PORT = int(os.environ.get("PORT", "8000"))
DYNAMODB_PORT = int(os.environ.get("LOCAL_DYNAMODB_PORT", "8001"))
ADMIN_LOGIN = "admin"


def main() -> int:
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "local"),
            "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "local"),
            "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            "DYNAMODB_ENDPOINT": f"http://127.0.0.1:{DYNAMODB_PORT}",
            "STAGE": "local",
        }
    )
    sys.path.insert(0, str(ROOT))
    from moto.server import ThreadedMotoServer

    # moto logs every DynamoDB request it serves.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    dynamodb = ThreadedMotoServer(ip_address="127.0.0.1", port=DYNAMODB_PORT, verbose=False)
    dynamodb.start()
    try:
        from chalicelib import users
        from chalicelib.models import create_tables

        create_tables()
        if users.get_user(ADMIN_LOGIN) is None:
            password = secrets.token_urlsafe(12)
            users.create_user(ADMIN_LOGIN, password, is_admin=True)
            print(f"Admin account: login {ADMIN_LOGIN}, password {password} (shown once)")
        print(f"Local DynamoDB (in memory) on http://127.0.0.1:{DYNAMODB_PORT}")
        print(f"API and pages on http://127.0.0.1:{API_PORT}  (Ctrl-C stops everything)")
        chalice = [str(Path(sys.executable).parent / "chalice"), "local", "--stage", "local", "--host", "127.0.0.1"]
        server = subprocess.Popen([*chalice, "--port", str(API_PORT)], cwd=ROOT)
        try:
            return server.wait()
        except KeyboardInterrupt:
            server.terminate()
            server.wait()
            return 0
    finally:
        dynamodb.stop()


if __name__ == "__main__":
    sys.exit(main())
