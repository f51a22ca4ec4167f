-- Vigie: bind the MQTT client id to the certificate CN (VerneMQ, vmq_diversity).
--
-- With listener.ssl.use_identity_as_username the username is the CN of a client
-- certificate our CA signed (the TLS listener requires one). VerneMQ still asks an
-- authentication plugin to accept the client: this hook accepts it only when the client
-- id it asked for is that CN, as Mosquitto's use_username_as_clientid and EMQX's
-- peer_cert_as_clientid do. Without it, any device could connect with the client id
-- "vigie-dispatcher", take over the dispatcher's session and swallow the alerts queued
-- for it. Publish and subscribe rights are vmq_acl's (vmq.acl).

function auth_on_register(reg)
    return reg.username ~= nil and reg.username ~= "" and reg.client_id == reg.username
end

function auth_on_register_m5(reg)
    return auth_on_register(reg)
end

hooks = {
    auth_on_register = auth_on_register,
    auth_on_register_m5 = auth_on_register_m5,
}
