// GET /api/docs: Swagger UI (swagger-ui-dist from npm, bundled here: no CDN) over the
// Host App's own /api/openapi.json. Nothing inline, so the page runs under the same CSP
// as the UI; no validator badge (it would fetch from validator.swagger.io).
import SwaggerUIBundle from "swagger-ui-dist/swagger-ui-es-bundle.js";
import "swagger-ui-dist/swagger-ui.css";
import "./docs.css";

SwaggerUIBundle({
  // Relative to the page (/api/docs), so a path prefix in front of the Host App still works.
  url: new URL("openapi.json", window.location.href).href,
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  tryItOutEnabled: false,
  displayRequestDuration: true,
});
