// Gives the R2 S3 stand-in (tests/standins/r2-s3.js) a port of its own. `wrangler dev` serves
// only the first config's Worker over HTTP; the stand-in runs as a second Worker inside the
// service's process (so it shares the service's local R2 bucket and queue), and this Worker, in
// a `wrangler dev` process of its own, forwards every request to it untouched through a service
// binding that wrangler's dev registry connects across the two processes. It must never change
// a request: the stand-in verifies SigV4 signatures over the method, path, query and headers.
export default {
  fetch(request, env) {
    return env.R2_S3.fetch(request);
  },
};
