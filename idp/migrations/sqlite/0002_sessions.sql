-- IdP session administration and logout (OpenID Connect RP-Initiated and Back-Channel Logout): ending a session
-- finds and revokes the grants issued under its `sid`.

CREATE INDEX grants_by_sid ON grants (sid);
