// Reads {"secret", "headers", "body"} as JSON on stdin and verifies the
// webhook with the standardwebhooks package: prints the verified payload
// and exits 0, or prints why not and exits 1.
import { Webhook } from "standardwebhooks";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const { secret, headers, body } = JSON.parse(input);
try {
  const payload = new Webhook(secret).verify(body, headers);
  console.log(JSON.stringify(payload));
} catch (e) {
  console.error(String(e && e.message ? e.message : e));
  process.exit(1);
}
