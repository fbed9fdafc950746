defmodule Caravan.Examples.NomadJobTest do
  # examples/nomad/caravan.nomad.hcl, parsed by a real HCL parser (python-hcl2,
  # installed by scripts/setup) in test/examples/check_nomad_job.py. The
  # checker is also run on broken copies of the job, so these tests fail when
  # the checker stops catching what it is there to catch.
  use ExUnit.Case, async: true

  @moduletag :examples

  @root Path.expand("../..", __DIR__)
  @job Path.join(@root, "examples/nomad/caravan.nomad.hcl")
  @checker Path.join(@root, "test/examples/check_nomad_job.py")

  @doc false
  def check(path, args \\ []) do
    System.cmd("python3", [@checker, path | args], stderr_to_stdout: true)
  end

  test "the kit's job passes every check" do
    {output, status} = check(@job)

    assert status == 0, output

    assert output =~
             ~s(ok: RELEASE_NODE is sample-app-<host port of "dist">@<host address of "dist">)

    assert output =~ ~s(ok: port "dist" is dynamic, in a bridge network, with to = -1)

    assert output =~
             ~s(ok: service "sample-app-dist" advertises port "dist" with address_mode = "host" and 1 check)

    assert output =~ ~s(ok: RELEASE_COOKIE comes from Nomad variable "nomad/jobs/sample-app")
  end

  # {what is broken, text in the job, its replacement, what the checker must say}
  @broken [
    {"a port mapped to a fixed number", "to = -1", "to = 4369",
     ~s(port "dist" has to = 4369, expected to = -1)},
    {"a static port", "to = -1", "static = 4370\n        to = -1", ~s(port "dist" is static)},
    {"host networking", ~s(mode = "bridge"), ~s(mode = "host"),
     ~s(the network has mode = "host", expected mode = "bridge")},
    {"a node name whose port label has no port", "${NOMAD_HOST_PORT_dist}@${NOMAD_IP_dist}",
     "${NOMAD_HOST_PORT_web}@${NOMAD_IP_web}",
     ~s(RELEASE_NODE uses port label "web", but the group network has no port "web")},
    {"a node name mixing two labels", "@${NOMAD_IP_dist}", "@${NOMAD_IP_web}",
     ~s(uses port label "dist" for the port but "web" for the address)},
    {"a node name without the port", "sample-app-${NOMAD_HOST_PORT_dist}@", "sample-app@",
     "does not have the shape"},
    {"a service on another port", ~s(name = "sample-app-dist"\n      port = "dist"),
     ~s(name = "sample-app-dist"\n      port = "http"), ~s(no service advertises port "dist")},
    {"address_mode alloc", ~s(address_mode = "host"), ~s(address_mode = "alloc"),
     ~s(has address_mode = "alloc", expected address_mode = "host")},
    {"no address_mode", ~s(address_mode = "host"), "", "has no address_mode"},
    {"no health check", "check {", "meta {", "has no check"},
    {"a cookie in the env block", "RELEASE_NODE = ",
     ~s(RELEASE_COOKIE = "s3cret"\n        RELEASE_NODE = ),
     "sets RELEASE_COOKIE in its env block"},
    {"a literal cookie in the template", "RELEASE_COOKIE={{ .cookie }}", "RELEASE_COOKIE=s3cret",
     "does not take RELEASE_COOKIE from a Nomad variable"},
    {"a cookie template that is not read into the environment", "env         = true",
     "env         = false", "needs env = true"},
    {"a cookie variable outside the job's own path", ~s(nomadVar "nomad/jobs/sample-app"),
     ~s(nomadVar "shared/cookie"), "can only read with an extra ACL policy"},
    {"a file that is not HCL", "job \"sample-app\" {", "job \"sample-app\" {{",
     "cannot parse the file as HCL"}
  ]

  setup do
    dir = Path.join(System.tmp_dir!(), "caravan-examples-#{System.unique_integer([:positive])}")
    File.mkdir_p!(dir)
    on_exit(fn -> File.rm_rf!(dir) end)
    {:ok, dir: dir}
  end

  # The job without its comment lines: comments repeat some of the snippets
  # the tests below break, and only the code may be broken.
  defp code do
    @job
    |> File.read!()
    |> String.split("\n")
    |> Enum.reject(&String.starts_with?(String.trim_leading(&1), "#"))
    |> Enum.join("\n")
  end

  test "the job without its comments still passes (the control for the tests below)", %{
    dir: dir
  } do
    control = Path.join(dir, "control.nomad.hcl")
    File.write!(control, code())

    assert {output, 0} = check(control)
    assert length(Regex.scan(~r/^ok: /m, output)) == 4, output
  end

  for {what, from, to, message} <- @broken do
    test "the checker refuses #{what}", %{dir: dir} do
      code = code()
      from = unquote(from)

      assert length(String.split(code, from)) == 2,
             "the mutation must match the job's code exactly once: #{inspect(from)}"

      broken = Path.join(dir, "broken.nomad.hcl")
      File.write!(broken, String.replace(code, from, unquote(to)))
      {output, status} = check(broken)

      assert status == 1, output
      assert output =~ "FAIL: #{broken}: "
      assert output =~ unquote(message)
      refute output =~ "ok:"
    end
  end

  test "a missing file is a clear failure, not a traceback" do
    {output, status} = check(Path.join(@root, "examples/nomad/missing.nomad.hcl"))

    assert status == 1
    assert output =~ "cannot read the file"
    refute output =~ "Traceback"
  end
end
